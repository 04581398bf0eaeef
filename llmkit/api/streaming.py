"""A dialect's events on the wire, framed in one place.

Server-sent events (sse-starlette) for the OpenAI, Anthropic and Responses
dialects; NDJSON lines for Ollama. A dialect gives two pure functions: how one of
its events is written (``frame``) and how a failure is (``error``). Once a stream
has started its status and headers are sent, so a failure can only travel as the
stream's last event; a cut stream would leave the client guessing. OpenAI's
clients also wait for a terminator (``data: [DONE]``), sent after an error too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse

from llmkit.api.generation import ending_in_error
from llmkit.errors import LlmkitError

T = TypeVar("T")
W = TypeVar("W")
#: One server-sent event's fields: ``data``, and ``event`` for a named one.
Fields = dict[str, str]


def named(event: Mapping[str, Any]) -> Fields:
    """An event named by its ``type``, as Anthropic's and the Responses SDKs read them."""
    return {"event": event["type"], "data": json.dumps(event, ensure_ascii=False)}


async def _framed(
    events: AsyncIterable[T], frame: Callable[[T], W], error: Callable[[LlmkitError], W]
) -> AsyncIterator[W]:
    async def each() -> AsyncIterator[W]:
        async for event in events:
            yield frame(event)

    async for written in ending_in_error(each(), error):
        yield written


def sse(
    events: AsyncIterable[T],
    *,
    frame: Callable[[T], Fields],
    error: Callable[[LlmkitError], Fields],
    end: Fields | None = None,
) -> EventSourceResponse:
    """``events`` as server-sent events; ``end`` is sent last, after a failure too."""

    async def body() -> AsyncIterator[Fields]:
        async for fields in _framed(events, frame, error):
            yield fields
        if end is not None:
            yield end

    return EventSourceResponse(body(), sep="\n")


def ndjson(
    events: AsyncIterable[T], *, frame: Callable[[T], str], error: Callable[[LlmkitError], str]
) -> StreamingResponse:
    """``events`` as NDJSON, one line each (``frame`` ends it with its newline)."""
    return StreamingResponse(_framed(events, frame, error), media_type="application/x-ndjson")
