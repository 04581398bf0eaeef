"""The Anthropic Messages API routes: HTTP only. Translation and stream events
live in ``convert``; here a request is read, run on its model's engine and sent
back as JSON or as server-sent events (each with its ``event:`` name, as
Anthropic's SDKs read them)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from llmkit.api import limits
from llmkit.api.anthropic import convert
from llmkit.api.anthropic import schemas as s
from llmkit.api.anthropic.errors import error_body
from llmkit.api.generation import (
    ClientGone,
    collect,
    ending_in_error,
    open_streams,
    unless_disconnected,
    watcher,
    within_limits,
)
from llmkit.engines.registry import ModelRegistry
from llmkit.errors import InvalidRequestError, LlmkitError

router = APIRouter(prefix="/v1")


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


@router.post("/messages", response_model=None)
async def messages(body: s.MessagesRequest, request: Request) -> Response:
    limits.check(request, body.sizes())
    model = _registry(request).get(body.model)
    (req,) = within_limits(request, [convert.from_messages_request(body)])
    head = convert.Head(f"msg_{uuid.uuid4().hex}", body.model)
    if body.stream:
        stream = await open_streams(model.engine, [req], watcher(request, model.name))
        # The reply is under way; the prompt's count for message_start is a
        # tokenization beside it (message_delta repeats the engine's own figure).
        ids = None
        with contextlib.suppress(LlmkitError):
            ids = await model.engine.encode(req)
        events = convert.to_events(head, stream, input_tokens=len(ids or ()))
        return _sse(events)
    try:
        ((text, last),) = await unless_disconnected(
            request, collect(model.engine, [req], watcher(request, model.name))
        )
    except ClientGone:
        return Response(status_code=499)
    return JSONResponse(convert.to_message(head, text, last).model_dump())


@router.post("/messages/count_tokens")
async def count_tokens(body: s.CountTokensRequest, request: Request) -> s.TokenCount:
    limits.check(request, body.sizes())
    engine = _registry(request).get(body.model).engine
    (req,) = within_limits(request, [convert.from_count_request(body)])
    ids = await engine.encode(req)
    if ids is None:
        raise InvalidRequestError("This model's engine cannot count the tokens of messages.")
    return s.TokenCount(input_tokens=len(ids))


def _sse(events: AsyncIterator[convert.Event]) -> EventSourceResponse:
    def error(e: LlmkitError) -> convert.Event:
        return error_body(e).model_dump()

    async def framed() -> AsyncIterator[dict[str, str]]:
        async for event in ending_in_error(events, error):
            yield {"event": event["type"], "data": json.dumps(event, ensure_ascii=False)}

    return EventSourceResponse(framed(), sep="\n")
