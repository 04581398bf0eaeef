"""API-key check for ``--api-key``: ``Authorization: Bearer KEY``, as OpenAI clients send it."""

from __future__ import annotations

import secrets

from fastapi import Request

from llmkit.errors import AuthenticationError


async def require_api_key(request: Request) -> None:
    expected: str | None = request.app.state.settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "Missing API key: send 'Authorization: Bearer <key>' (the key given to --api-key)."
        )
    if not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise AuthenticationError("Incorrect API key provided.")
