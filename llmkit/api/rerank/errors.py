"""llmkit errors in Cohere's shape, for ``/v2/``: ``{"id", "message"}`` with the
status, which the ``cohere`` SDK raises as ``BadRequestError`` and its kin."""

from __future__ import annotations

import uuid

from fastapi.responses import JSONResponse

from llmkit.errors import LlmkitError


def error_response(exc: LlmkitError) -> JSONResponse:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = {"id": str(uuid.uuid4()), "message": exc.message}
    return JSONResponse(body, status_code=exc.status, headers=headers or None)
