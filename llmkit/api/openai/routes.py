"""The OpenAI API routes: HTTP only. Translation, stream events, echo and usage
live in ``convert``; here a request is read, run on its model's engine and sent
back as JSON or as server-sent events."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from llmkit.api import limits
from llmkit.api.generation import (
    ClientGone,
    collect,
    ending_in_error,
    open_streams,
    unless_disconnected,
    watcher,
    within_limits,
)
from llmkit.api.models_view import catalog_views, view
from llmkit.api.openai import convert
from llmkit.api.openai import schemas as s
from llmkit.api.openai.errors import error_body
from llmkit.engines.registry import ModelRegistry
from llmkit.errors import LlmkitError

router = APIRouter(prefix="/v1")


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _head(prefix: str, model: str) -> convert.Head:
    return convert.Head(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), model)


@router.get("/models")
async def list_models(request: Request) -> s.ModelList:
    return convert.to_model_list(catalog_views(_registry(request), request.app.state.local_models))


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> s.ModelCard:
    return convert.to_model_card(model_id, view(_registry(request).get(model_id)))


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: s.ChatCompletionRequest, request: Request) -> Response:
    limits.check(request, body.sizes())
    model = _registry(request).get(body.model)
    n = body.n or 1
    reqs = within_limits(request, [convert.from_chat_request(body, index=i) for i in range(n)], n)
    head = _head("chatcmpl", body.model)
    legacy = convert.is_legacy(body)
    scored = reqs[0].logprobs is not None
    if body.stream:
        stream = await open_streams(model.engine, reqs, watcher(request, model.name))
        usage = convert.include_usage(body)
        chunks = convert.to_chat_chunks(
            head, stream, n=n, include_usage=usage, legacy=legacy, logprobs=scored
        )
        return _sse(chunks, usage)
    try:
        results = await unless_disconnected(
            request, collect(model.engine, reqs, watcher(request, model.name))
        )
    except ClientGone:
        return Response(status_code=499)
    answer = convert.to_chat_completion(head, results, legacy=legacy, logprobs=scored)
    return JSONResponse(answer.model_dump())


@router.post("/completions", response_model=None)
async def completions(body: s.CompletionRequest, request: Request) -> Response:
    limits.check(request, body.sizes())
    model = _registry(request).get(body.model)
    n = body.n or 1
    prompts = convert.completion_prompts(body)
    reqs = [convert.from_completion_request(body, p, index=i) for p in prompts for i in range(n)]
    within_limits(request, reqs, n)
    echo = convert.completion_echo(body, prompts)
    head = _head("cmpl", body.model)
    scored = reqs[0].logprobs is not None
    if body.stream:
        stream = await open_streams(model.engine, reqs, watcher(request, model.name))
        usage = convert.include_usage(body)
        events = convert.to_completion_chunks(
            head, stream, echo=echo, include_usage=usage, logprobs=scored
        )
        return _sse(events, usage)
    try:
        results = await unless_disconnected(
            request, collect(model.engine, reqs, watcher(request, model.name))
        )
    except ClientGone:
        return Response(status_code=499)
    answer = convert.to_completion(head, results, echo, logprobs=scored)
    return JSONResponse(answer.model_dump())


def _sse(
    events: AsyncIterator[s.ChatCompletionChunk | s.Completion], include_usage: bool
) -> EventSourceResponse:
    async def data() -> AsyncIterator[str]:
        async for event in events:
            yield convert.to_sse_data(event, include_usage=include_usage)

    def error(e: LlmkitError) -> str:
        return error_body(e).model_dump_json()

    async def framed() -> AsyncIterator[dict[str, str]]:
        async for line in ending_in_error(data(), error):
            yield {"data": line}
        # Sent after an error event too, so clients that wait for it stop waiting.
        yield {"data": "[DONE]"}

    return EventSourceResponse(framed(), sep="\n")
