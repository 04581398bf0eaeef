"""llmkit errors in Ollama's shape: ``{"error": "..."}`` with the HTTP status.

An error with a code also says it, and its param and fields, beside the string
(``{"error": "...", "code": "context_length_exceeded", "param": ..., "details":
{...}}``): Ollama's clients read only ``error``, and llmkit's client rebuilds the
same exception from the rest."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llmkit.api.ollama.schemas import ErrorResponse
from llmkit.errors import LlmkitError, ModelNotFoundError


def error_line(exc: LlmkitError) -> ErrorResponse:
    message = exc.message
    if isinstance(exc, ModelNotFoundError):
        # Ollama's wording, plus what this server does serve.
        served = ", ".join(exc.available) or "none"
        message = f'model "{exc.model}" not found; this server serves: {served}'
    if not exc.code:
        return ErrorResponse(error=message)
    # Beside Ollama's string: what a client needs to rebuild the exact error.
    return ErrorResponse(
        error=message, code=exc.code, param=exc.param, details=exc.wire_fields() or None
    )


def error_response(exc: LlmkitError) -> JSONResponse:
    retry_after = getattr(exc, "retry_after", None)  # busy (503) or rate-limited (429)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_line(exc).model_dump(), status_code=exc.status, headers=headers)
