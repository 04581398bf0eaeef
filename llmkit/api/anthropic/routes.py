"""The Anthropic Messages API routes: HTTP only. Translation and stream events
live in ``convert``; here a request is read, run on its model's engine and sent
back as JSON or as server-sent events (each with its ``event:`` name, as
Anthropic's SDKs read them)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from llmkit.api.anthropic import convert
from llmkit.api.anthropic import schemas as s
from llmkit.api.anthropic.errors import error_body
from llmkit.api.anthropic.thinking import gives_blocks, shows_thinking
from llmkit.api.generation import start
from llmkit.api.streaming import named, sse
from llmkit.errors import InvalidRequestError, LlmkitError

router = APIRouter(prefix="/v1")


@router.post("/messages", response_model=None)
async def messages(body: s.MessagesRequest, request: Request) -> Response:
    gen = start(
        request,
        body.model,
        lambda: [convert.from_messages_request(body)],
        body.sizes(),
        think_param="thinking",
    )
    head = convert.Head(f"msg_{uuid.uuid4().hex}", body.model)
    shown, blocks = shows_thinking(body), gives_blocks(body)
    if body.stream:
        stream = await gen.streamed()
        # The reply is under way; the prompt's count for message_start is a
        # tokenization beside it (message_delta repeats the engine's own figure).
        ids = None
        with contextlib.suppress(LlmkitError):
            ids = await gen.engine.encode(gen.reqs[0])
        events = convert.to_events(
            head, stream, input_tokens=len(ids or ()), shown=shown, blocks=blocks
        )
        return _sse(events)
    ((text, last),) = await gen.whole()
    return JSONResponse(
        convert.to_message(head, text, last, shown=shown, blocks=blocks).model_dump()
    )


@router.post("/messages/count_tokens")
async def count_tokens(body: s.CountTokensRequest, request: Request) -> s.TokenCount:
    make = lambda: [convert.from_count_request(body)]  # noqa: E731
    gen = start(request, body.model, make, body.sizes(), think_param="thinking")
    ids = await gen.engine.encode(gen.reqs[0])
    if ids is None:
        raise InvalidRequestError("This model's engine cannot count the tokens of messages.")
    return s.TokenCount(input_tokens=len(ids))


def _sse(events: AsyncIterator[convert.Event]) -> EventSourceResponse:
    return sse(events, frame=named, error=lambda e: named(error_body(e).model_dump()))
