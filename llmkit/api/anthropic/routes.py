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

from llmkit.api import limits
from llmkit.api.anthropic import convert
from llmkit.api.anthropic import schemas as s
from llmkit.api.anthropic.errors import error_body
from llmkit.api.anthropic.thinking import gives_blocks, shows_thinking
from llmkit.api.generation import served, start
from llmkit.api.images import Images, read_images
from llmkit.api.streaming import named, sse
from llmkit.engines.registry import ServedModel
from llmkit.errors import InvalidRequestError, LlmkitError

router = APIRouter(prefix="/v1")


@router.post("/messages", response_model=None)
async def messages(body: s.MessagesRequest, request: Request) -> Response:
    model, pics = await _images(request, body)
    gen = start(
        request,
        model,
        lambda: [convert.from_messages_request(body, pics)],
        None,
        think_param="thinking",
        asked_as=body.model,
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
    model, pics = await _images(request, body)
    make = lambda: [convert.from_count_request(body, pics)]  # noqa: E731
    gen = start(request, model, make, None, think_param="thinking", asked_as=body.model)
    ids = await gen.engine.encode(gen.reqs[0])
    if ids is None:
        raise InvalidRequestError("This model's engine cannot count the tokens of messages.")
    return s.TokenCount(input_tokens=len(ids))


async def _images(request: Request, body: s.PromptFields) -> tuple[ServedModel, Images]:
    """The request's model and images, read once its sizes are checked."""
    limits.check(request, body.sizes())
    model = served(request, body.model)
    return model, await read_images(request, body.image_refs(), model, asked_as=body.model)


def _sse(events: AsyncIterator[convert.Event]) -> EventSourceResponse:
    return sse(events, frame=named, error=lambda e: named(error_body(e).model_dump()))
