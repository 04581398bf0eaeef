"""llmkit errors in Ollama's shape: ``{"error": "..."}`` with the HTTP status."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from llmkit.errors import LlmkitError, ModelNotFoundError, ServerBusyError


def error_line(exc: LlmkitError) -> dict[str, Any]:
    if isinstance(exc, ModelNotFoundError):
        # Ollama's wording, plus what this server does serve.
        served = ", ".join(exc.available) or "none"
        return {"error": f'model "{exc.model}" not found; this server serves: {served}'}
    return {"error": exc.message}


def error_response(exc: LlmkitError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServerBusyError) else None
    return JSONResponse(error_line(exc), status_code=exc.status, headers=headers)
