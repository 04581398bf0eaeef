"""llmkit errors in Anthropic's shape: ``{"type": "error", "error": {"type",
"message"}}``, with the error type Anthropic gives each status. The same body
is a stream's ``error`` event when a failure comes after the stream started."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llmkit.api.anthropic.schemas import ErrorDetail, ErrorResponse
from llmkit.errors import LlmkitError

# Anthropic's error types by status; any other 5xx is an api_error.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",  # a full queue: Anthropic's "overloaded" (its own status is 529)
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(exc: LlmkitError) -> ErrorResponse:
    return ErrorResponse(error=ErrorDetail(type=error_type(exc.status), message=exc.message))


def error_response(exc: LlmkitError) -> JSONResponse:
    retry_after = getattr(exc, "retry_after", None)  # busy (503) or rate-limited (429)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(exc).model_dump(), status_code=exc.status, headers=headers)
