"""The Ollama API routes: HTTP only; translation lives in ``convert``.

Streams are NDJSON, one object per line, as Ollama sends them. The body may come
without a JSON content type: Ollama's own examples use ``curl -d`` without one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError

from llmkit import __version__
from llmkit.api.auth import require_api_key
from llmkit.api.generation import ClientGone, open_streams, unless_disconnected
from llmkit.api.ollama import convert
from llmkit.api.ollama import schemas as s
from llmkit.api.ollama.errors import error_line
from llmkit.core.durations import parse_keep_alive
from llmkit.core.types import Chunk, GenerateRequest
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import InvalidRequestError, LlmkitError

router = APIRouter(prefix="/api")
generation = APIRouter(prefix="/api", dependencies=[Depends(require_api_key)])
root = APIRouter()
M = TypeVar("M", bound=s.OllamaRequest)


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """Read the body as JSON whatever its content type: Ollama's own examples
    send it with ``curl -d``, which labels it as a form."""

    async def read(request: Request) -> M:
        raw = await request.body()
        if not raw.strip():
            raise InvalidRequestError("missing request body")
        try:
            return model.model_validate_json(raw)
        except ValidationError as e:
            errors = e.errors(include_url=False)
            if errors and errors[0]["type"] == "json_invalid":
                reason = (errors[0].get("ctx") or {}).get("error", "invalid JSON")
                raise InvalidRequestError(
                    f"The request body is not valid JSON ({reason})."
                ) from None
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in errors]
            ) from None

    return read


ShowBody = Annotated[s.ModelRequest, Depends(json_body(s.ModelRequest))]
ChatBody = Annotated[s.ChatRequest, Depends(json_body(s.ChatRequest))]
GenerateBody = Annotated[s.GenerateRequest, Depends(json_body(s.GenerateRequest))]


@root.get("/", response_class=PlainTextResponse)
@root.head("/", response_class=PlainTextResponse)
async def is_running() -> str:
    return "Ollama is running"  # what Ollama answers; some clients check for it


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _model(request: Request, name: str) -> ServedModel:
    if not name:
        raise InvalidRequestError("model is required", param="model")
    reg = _registry(request)
    try:
        return reg.get(name)
    except LlmkitError:
        # Ollama clients name models "name:tag"; an untagged name is ":latest".
        if name.endswith(":latest"):
            return reg.get(name.removesuffix(":latest"))
        raise


@generation.get("/tags")
async def tags(request: Request) -> dict[str, Any]:
    return convert.to_tags(_registry(request).models)


@generation.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    return convert.to_ps(_registry(request).models)


@generation.post("/show")
async def show(request: Request, body: ShowBody) -> dict[str, Any]:
    return convert.to_show(_model(request, body.wanted))


@generation.post("/chat", response_model=None)
async def chat(request: Request, body: ChatBody) -> Response:
    model = _model(request, body.model)
    timing = convert.Timing(start=convert.Timing.clock(), loads=model.loads)
    if not body.messages:
        return await _load(model, body, chat=True)
    req = convert.from_chat_request(body)
    model.hold(_keep_alive(model, body))

    def line(text: str) -> dict[str, Any]:
        return convert.to_chat_chunk(body.model, text)

    def last(text: str, final: Chunk, timing: convert.Timing) -> dict[str, Any]:
        return convert.to_chat_done(body.model, text, final.finish_reason, final.usage, timing)

    return await _respond(request, model, timing, req, bool(body.stream), line, last)


@generation.post("/generate", response_model=None)
async def generate(request: Request, body: GenerateBody) -> Response:
    model = _model(request, body.model)
    timing = convert.Timing(start=convert.Timing.clock(), loads=model.loads)
    if not body.prompt and not body.system and not body.template:
        return await _load(model, body, chat=False)
    req = convert.from_generate_request(body)
    model.hold(_keep_alive(model, body))
    # Ollama hands back the conversation so far as token ids, and takes them back
    # as ``context`` to continue it.
    prompt = await model.engine.encode(req)
    if prompt is not None:
        prompt = (body.context or []) + prompt
        req = replace(req, messages=None, prompt=tuple(prompt))
    elif body.context:
        raise InvalidRequestError(
            "context is not supported by this model's engine.", param="context"
        )
    out: list[int] = []

    def line(text: str) -> dict[str, Any]:
        return convert.to_generate_chunk(body.model, text)

    def last(text: str, final: Chunk, timing: convert.Timing) -> dict[str, Any]:
        context = None if prompt is None else prompt + out
        return convert.to_generate_done(
            body.model, text, final.finish_reason, final.usage, timing, context
        )

    return await _respond(request, model, timing, req, bool(body.stream), line, last, out)


def _keep_alive(model: ServedModel, body: s.GenerationFields) -> float | None:
    """The request's keep_alive in seconds (None: forever); the model's own when absent."""
    if body.keep_alive is None:
        return model.keep_alive
    try:
        return parse_keep_alive(body.keep_alive)
    except ValueError as e:
        raise InvalidRequestError(str(e), param="keep_alive") from None


async def _load(model: ServedModel, body: s.GenerationFields, *, chat: bool) -> JSONResponse:
    """An empty prompt loads the model (or, with keep_alive 0, unloads it), as in Ollama."""
    loaded = await model.keep(_keep_alive(model, body))
    return JSONResponse(convert.to_load_answer(body.model, chat, unload=not loaded))


async def _respond(
    request: Request,
    model: ServedModel,
    timing: convert.Timing,
    req: GenerateRequest,
    stream: bool,
    line: Callable[[str], dict[str, Any]],
    last: Callable[[str, Chunk, convert.Timing], dict[str, Any]],
    token_ids: list[int] | None = None,
) -> Response:
    """Run one generation, streamed as NDJSON lines or answered as one object."""
    chunks = await open_streams(model.engine, [req])  # refusals still get a plain error status
    timing.first = convert.Timing.clock()
    if model.loads != timing.loads:  # this request waited for the model to load
        timing.load = model.last_load_ns
    keep = token_ids if token_ids is not None else []

    async def run() -> AsyncIterator[tuple[str, Chunk | None]]:
        async for _, chunk in chunks:
            keep.extend(chunk.token_ids)
            yield chunk.text, (chunk if chunk.finish_reason else None)

    if stream:
        return StreamingResponse(
            _ndjson(run(), line, last, timing), media_type="application/x-ndjson"
        )

    async def whole() -> dict[str, Any]:
        texts, final = [], Chunk()
        async for text, end in run():
            texts.append(text)
            final = end or final
        timing.end = convert.Timing.clock()
        return last("".join(texts), final, timing)

    try:
        return JSONResponse(await unless_disconnected(request, whole()))
    except ClientGone:
        return Response(status_code=499)


async def _ndjson(
    pieces: AsyncIterator[tuple[str, Chunk | None]],
    line: Callable[[str], dict[str, Any]],
    last: Callable[[str, Chunk, convert.Timing], dict[str, Any]],
    timing: convert.Timing,
) -> AsyncIterator[str]:
    try:
        async for text, end in pieces:
            if text:
                yield _dump(line(text))
            if end is not None:
                timing.end = convert.Timing.clock()
                yield _dump(last("", end, timing))
    except LlmkitError as e:
        # Headers are gone: the error travels as the last line, as Ollama does.
        yield _dump(error_line(e))


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"
