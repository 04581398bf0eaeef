"""llmkit errors in Ollama's shape: ``{"error": "..."}`` with the HTTP status.

An error with a code also says it, and its param and fields, beside the string
(``{"error": "...", "code": "context_length_exceeded", "param": ..., "details":
{...}}``): Ollama's clients read only ``error``, and llmkit's client rebuilds the
same exception from the rest."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from llmkit.errors import LlmkitError, ModelNotFoundError, ServerBusyError


def error_line(exc: LlmkitError) -> dict[str, Any]:
    message = exc.message
    if isinstance(exc, ModelNotFoundError):
        # Ollama's wording, plus what this server does serve.
        served = ", ".join(exc.available) or "none"
        message = f'model "{exc.model}" not found; this server serves: {served}'
    line: dict[str, Any] = {"error": message}
    if exc.code:
        extra = {"code": exc.code, "param": exc.param, "details": exc.wire_fields() or None}
        line.update({k: v for k, v in extra.items() if v is not None})
    return line


def error_response(exc: LlmkitError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServerBusyError) else None
    return JSONResponse(error_line(exc), status_code=exc.status, headers=headers)
