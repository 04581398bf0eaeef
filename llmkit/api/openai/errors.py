"""llmkit errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``,
plus, for errors that carry fields (a ContextLengthError's numbers, the models a
ModelNotFoundError names), ``"details"`` beside ``"error"``: OpenAI's schema allows
the extra key, its clients ignore it, and llmkit's client rebuilds the exception."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llmkit.api.openai.schemas import ErrorBody, ErrorResponse
from llmkit.errors import LlmkitError

# OpenAI's own error types by status.
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    403: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "server_error",
}


def error_body(exc: LlmkitError) -> ErrorResponse:
    return ErrorResponse(
        error=ErrorBody(
            message=exc.message,
            type=_TYPES.get(exc.status, "server_error"),
            param=exc.param,
            code=exc.code,
        ),
        details=exc.wire_fields() or None,
    )


def error_response(exc: LlmkitError) -> JSONResponse:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)  # busy (503) or rate-limited (429)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(
        error_body(exc).model_dump(), status_code=exc.status, headers=headers or None
    )
