"""The OpenAI API routes: HTTP only; translation lives in ``convert``."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from llmkit.api.auth import require_api_key
from llmkit.api.generation import ClientGone, collect, open_streams, unless_disconnected
from llmkit.api.openai import convert
from llmkit.api.openai import schemas as s
from llmkit.api.openai.errors import error_body
from llmkit.core.types import Usage
from llmkit.engines.registry import ModelRegistry
from llmkit.errors import LlmkitError

log = logging.getLogger("llmkit.api.openai")
router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


@router.get("/models")
async def list_models(request: Request) -> s.ModelList:
    return s.ModelList(
        data=[
            s.ModelCard(id=name, created=m.created, max_model_len=m.engine.context_length)
            for m in _registry(request).models
            for name in m.names
        ]
    )


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> s.ModelCard:
    m = _registry(request).get(model_id)
    return s.ModelCard(id=model_id, created=m.created, max_model_len=m.engine.context_length)


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: s.ChatCompletionRequest, request: Request) -> Response:
    model = _registry(request).get(body.model)
    n = body.n or 1
    reqs = [convert.from_chat_request(body, index=i) for i in range(n)]
    rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        stream = await open_streams(model.engine, reqs)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_chat_events(stream, rid, created, body.model, n, include_usage))
    try:
        results = await unless_disconnected(request, collect(model.engine, reqs))
    except ClientGone:
        return Response(status_code=499)
    return JSONResponse(convert.to_chat_completion(rid, created, body.model, results).model_dump())


async def _chat_events(
    stream: AsyncIterator, rid: str, created: int, model: str, n: int, include_usage: bool
) -> AsyncIterator[str]:
    def dump(chunk: s.ChatCompletionChunk) -> str:
        data = chunk.model_dump()
        if not include_usage:
            data.pop("usage")
        return json.dumps(data, ensure_ascii=False)

    for i in range(n):
        yield dump(convert.to_chat_chunk(rid, created, model, i, None))
    usages: list[Usage] = []
    async for i, chunk in stream:
        if chunk.text or chunk.finish_reason:
            yield dump(convert.to_chat_chunk(rid, created, model, i, chunk))
        if chunk.usage:
            usages.append(chunk.usage)
    if include_usage:
        yield dump(convert.to_chat_usage_chunk(rid, created, model, usages))


@router.post("/completions", response_model=None)
async def completions(body: s.CompletionRequest, request: Request) -> Response:
    model = _registry(request).get(body.model)
    n = body.n or 1
    prompts = convert.completion_prompts(body)
    reqs = [convert.from_completion_request(body, p, index=i) for p in prompts for i in range(n)]
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    echo = [p if body.echo and isinstance(p, str) else "" for p in prompts for _ in range(n)]
    if body.stream:
        stream = await open_streams(model.engine, reqs)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_completion_events(stream, rid, created, body.model, echo, include_usage))
    try:
        results = await unless_disconnected(request, collect(model.engine, reqs))
    except ClientGone:
        return Response(status_code=499)
    results = [(e + text, last) for e, (text, last) in zip(echo, results, strict=True)]
    return JSONResponse(convert.to_completion(rid, created, body.model, results).model_dump())


async def _completion_events(
    stream: AsyncIterator, rid: str, created: int, model: str, echo: list[str], include_usage: bool
) -> AsyncIterator[str]:
    usages: list[Usage] = []
    started: set[int] = set()
    async for i, chunk in stream:
        if i not in started and echo[i]:
            chunk = type(chunk)(
                text=echo[i] + chunk.text,
                token_ids=chunk.token_ids,
                finish_reason=chunk.finish_reason,
                usage=chunk.usage,
            )
        started.add(i)
        if chunk.usage:
            usages.append(chunk.usage)
        if chunk.text or chunk.finish_reason:
            data = convert.to_completion_chunk(rid, created, model, i, chunk).model_dump()
            if not include_usage:
                data.pop("usage")
            yield json.dumps(data, ensure_ascii=False)
    if include_usage:
        c = s.Completion(
            id=rid, created=created, model=model, choices=[], usage=convert.to_usage(usages)
        )
        yield json.dumps(c.model_dump(), ensure_ascii=False)


def _sse(events: AsyncIterator[str]) -> EventSourceResponse:
    async def framed() -> AsyncIterator[dict[str, str]]:
        try:
            async for data in events:
                yield {"data": data}
        except LlmkitError as e:
            # Headers are gone: the error travels as the last event, then the stream ends.
            yield {"data": error_body(e).model_dump_json()}
        yield {"data": "[DONE]"}

    return EventSourceResponse(framed(), sep="\n")
