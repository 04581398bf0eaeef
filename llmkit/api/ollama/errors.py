"""llmkit errors in Ollama's shape: ``{"error": "..."}`` with the HTTP status."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llmkit.api.ollama.schemas import ErrorResponse
from llmkit.errors import LlmkitError, ModelNotFoundError


def error_line(exc: LlmkitError) -> ErrorResponse:
    if isinstance(exc, ModelNotFoundError):
        # Ollama's wording, plus what this server does serve.
        served = ", ".join(exc.available) or "none"
        return ErrorResponse(error=f'model "{exc.model}" not found; this server serves: {served}')
    return ErrorResponse(error=exc.message)


def error_response(exc: LlmkitError) -> JSONResponse:
    retry_after = getattr(exc, "retry_after", None)  # busy (503) or rate-limited (429)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_line(exc).model_dump(), status_code=exc.status, headers=headers)
