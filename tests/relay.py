"""A loopback relay between a client under test and a real ``llmkit serve``: it
passes every request and answer through unchanged, except that chat completions
ask for ``ignore_eos`` (the server's own option), and it counts the pieces of
each streamed reply it passed on.

For tests that must act while a reply is still running (stop it with Ctrl-C):
with the end-of-sequence token ignored the reply runs to its ``max_tokens``
whatever the model says, and the count says when some of it has arrived.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.conftest import serving

CHAT = "/v1/chat/completions"
# Hop-by-hop or recomputed on the way: the relay's own HTTP stack sets them.
_DROP = {"host", "content-length", "transfer-encoding", "connection"}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class Relay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.pieces: list[int] = []  # per streamed chat reply: SSE data lines passed on
        self.app = Starlette(routes=[Route("/{path:path}", self._forward, methods=_METHODS)])

    async def _forward(self, request: Request) -> StreamingResponse:
        body = await request.body()
        if request.method == "POST" and request.url.path == CHAT:
            body = json.dumps({**json.loads(body), "ignore_eos": True}).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        client = httpx.AsyncClient(base_url=self.upstream, timeout=None)
        sent = client.build_request(
            request.method,
            request.url.path,
            params=request.query_params,
            headers=headers,
            content=body,
        )
        answer = await client.send(sent, stream=True)
        counted = request.url.path == CHAT and answer.headers.get("content-type", "").startswith(
            "text/event-stream"
        )
        if counted:
            self.pieces.append(0)
        index = len(self.pieces) - 1

        async def through() -> AsyncIterator[bytes]:
            try:
                async for raw in answer.aiter_raw():
                    if counted:
                        self.pieces[index] += raw.count(b"data: {")
                    yield raw
            finally:
                await answer.aclose()
                await client.aclose()

        out = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP}
        return StreamingResponse(through(), status_code=answer.status_code, headers=out)


@contextlib.contextmanager
def relay(upstream: str) -> Iterator[tuple[str, Relay]]:
    """A running relay to ``upstream``: its URL and the ``Relay`` (for its counts)."""
    r = Relay(upstream)
    with serving(r.app) as url:
        yield url, r
