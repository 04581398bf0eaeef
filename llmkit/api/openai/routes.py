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
from llmkit.api.generation import registry, served, start
from llmkit.api.images import read_images
from llmkit.api.models_view import catalog_views, view
from llmkit.api.openai import convert, replies
from llmkit.api.openai import schemas as s
from llmkit.api.openai.errors import error_body
from llmkit.api.openai.reasoning import from_reasoning
from llmkit.api.streaming import sse

router = APIRouter(prefix="/v1")
#: Sent after the last event, an error's too: OpenAI's clients wait for it.
DONE = {"data": "[DONE]"}


def _head(prefix: str, model: str) -> replies.Head:
    return replies.Head(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), model)


@router.get("/models")
async def list_models(request: Request) -> s.ModelList:
    return replies.to_model_list(catalog_views(registry(request), request.app.state.local_models))


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> s.ModelCard:
    return replies.to_model_card(model_id, view(registry(request).get(model_id)))


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: s.ChatCompletionRequest, request: Request) -> Response:
    n = body.n or 1
    limits.check(request, body.sizes())  # before the images are read
    model = served(request, body.model)
    pics = await read_images(request, body.image_refs(), model, asked_as=body.model)
    gen = start(
        request,
        model,
        lambda: [convert.from_chat_request(body, pics, index=i) for i in range(n)],
        None,
        think_param=from_reasoning(body)[2],
        asked_as=body.model,
    )
    head = _head("chatcmpl", body.model)
    legacy = convert.is_legacy(body)
    scored = gen.reqs[0].logprobs is not None
    if body.stream:
        usage = convert.include_usage(body)
        chunks = replies.to_chat_chunks(
            head, await gen.streamed(), n=n, include_usage=usage, legacy=legacy, logprobs=scored
        )
        return _sse(chunks, usage)
    answer = replies.to_chat_completion(head, await gen.whole(), legacy=legacy, logprobs=scored)
    return JSONResponse(answer.model_dump())


@router.post("/completions", response_model=None)
async def completions(body: s.CompletionRequest, request: Request) -> Response:
    limits.check(request, body.sizes())  # before the prompts are read
    model = served(request, body.model)
    n = body.n or 1
    prompts = convert.completion_prompts(body)
    gen = start(
        request,
        model,
        lambda: [
            convert.from_completion_request(body, p, index=i) for p in prompts for i in range(n)
        ],
        body.sizes(),
    )
    echo = convert.completion_echo(body, prompts)
    head = _head("cmpl", body.model)
    scored = gen.reqs[0].logprobs is not None
    if body.stream:
        usage = convert.include_usage(body)
        events = replies.to_completion_chunks(
            head, await gen.streamed(), echo=echo, include_usage=usage, logprobs=scored
        )
        return _sse(events, usage)
    answer = replies.to_completion(head, await gen.whole(), echo, logprobs=scored)
    return JSONResponse(answer.model_dump())


def _sse(
    events: AsyncIterator[s.ChatCompletionChunk | s.Completion], include_usage: bool
) -> EventSourceResponse:
    return sse(
        events,
        frame=lambda event: {"data": replies.to_sse_data(event, include_usage=include_usage)},
        error=lambda e: {"data": error_body(e).model_dump_json()},
        end=DONE,
    )
