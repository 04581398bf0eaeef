"""The Ollama API routes: HTTP only; translation, stream lines and listings live
in ``convert``. Here the clocks are read and handed to it.

Streams are NDJSON, one object per line, as Ollama sends them. The body may come
without a JSON content type: Ollama's own examples use ``curl -d`` without one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from llmkit.api import limits
from llmkit.api.generation import Generation, registry, served, start
from llmkit.api.images import Images, read_images
from llmkit.api.models_view import catalog_views, view, views
from llmkit.api.ollama import convert, listings, replies
from llmkit.api.ollama import schemas as s
from llmkit.api.ollama.embed_schemas import EmbedFields
from llmkit.api.ollama.errors import error_line
from llmkit.api.streaming import ndjson
from llmkit.core.durations import parse_keep_alive
from llmkit.engines.registry import ServedModel
from llmkit.errors import InvalidRequestError
from llmkit.version import __version__


class JsonBodyRoute(APIRoute):
    """Reads the body as JSON whatever its content type: Ollama's own examples send
    it with ``curl -d``, which labels it as a form. The body models stay ordinary
    parameters, so the OpenAPI document describes them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def as_json(request: Request) -> Response:
            if request.method in ("POST", "DELETE"):  # DELETE /api/delete has a body too
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
            return await handler(request)

        return as_json


router = APIRouter(prefix="/api", route_class=JsonBodyRoute)

root = APIRouter()
ShowBody = s.ModelRequest
ChatBody = s.ChatRequest
GenerateBody = s.GenerateRequest


@root.get("/", response_class=PlainTextResponse)
@root.head("/", response_class=PlainTextResponse)
async def is_running() -> str:
    return "Ollama is running"  # what Ollama answers; some clients check for it


#: The Ollama release whose API these routes answer: clients gate features (tools,
#: thinking) on it. llmkit's own version is in every response's X-Llmkit-Version.
OLLAMA_API_VERSION = "0.12.0"


@router.get("/version")
async def version() -> dict[str, str]:
    # Ollama's clients read "version" only; llmkit's own tools read "llmkit" too.
    return {"version": OLLAMA_API_VERSION, "llmkit": __version__}


def _model(request: Request, name: str) -> ServedModel:
    if not name:
        raise InvalidRequestError("model is required", param="model")
    # Ollama clients name models "name:tag"; the registry reads "name:latest" as "name".
    return served(request, name)


@router.get("/tags")
async def tags(request: Request) -> s.TagsResponse:
    return listings.to_tags(catalog_views(registry(request), request.app.state.local_models))


@router.get("/ps")
async def ps(request: Request) -> s.PsResponse:
    return listings.to_ps(views(registry(request).models), now=datetime.now(UTC))


@router.post("/show")
async def show(request: Request, body: ShowBody) -> s.ShowResponse:
    model = _model(request, body.wanted)
    return listings.to_show(view(model), model.modelfile)


@router.post("/chat", response_model=None)
async def chat(request: Request, body: ChatBody) -> Response:
    model = _model(request, body.model)
    begun, loads = time.perf_counter_ns(), model.loads
    if not body.messages:
        return await _load(model, body, chat=True)
    pics = await _images(request, model, body)
    gen = start(
        request, model, lambda: [convert.from_chat_request(body, pics)], None, asked_as=body.model
    )
    model.hold(_keep_alive(model, body))
    stamped, timing = await _run(gen, begun, loads)
    if body.stream:
        return _ndjson(replies.to_chat_lines(body.model, timing, stamped))
    return await _whole(gen, replies.to_chat_response(body.model, timing, stamped))


@router.post("/generate", response_model=None)
async def generate(request: Request, body: GenerateBody) -> Response:
    model = _model(request, body.model)
    begun, loads = time.perf_counter_ns(), model.loads
    if not body.prompt and not body.system and not body.template:
        return await _load(model, body, chat=False)
    pics = await _images(request, model, body)
    gen = start(
        request,
        model,
        lambda: [convert.from_generate_request(body, model.modelfile, pics)],
        None,
        asked_as=body.model,
    )
    model.hold(_keep_alive(model, body))
    (req,) = gen.reqs
    req, prompt_ids = convert.with_context(req, body.context, await gen.engine.encode(req))
    stamped, timing = await _run(dataclasses.replace(gen, reqs=[req]), begun, loads)
    if body.stream:
        return _ndjson(replies.to_generate_lines(body.model, timing, stamped, prompt_ids))
    answer = replies.to_generate_response(body.model, timing, stamped, prompt_ids)
    return await _whole(gen, answer)


async def _images(request: Request, model: ServedModel, body: ChatBody | GenerateBody) -> Images:
    """The request's images, read once its sizes are checked (``api.images``)."""
    limits.check(request, body.sizes())
    return await read_images(request, body.image_refs(), model, asked_as=body.model)


def _keep_alive(model: ServedModel, body: s.GenerationFields | EmbedFields) -> float | None:
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
    answer = replies.to_load_answer(body.model, chat=chat, unload=not loaded, now=datetime.now(UTC))
    return JSONResponse(answer.model_dump())


async def _run(
    gen: Generation, begun: int, loads: int
) -> tuple[AsyncIterator[replies.Stamped], replies.Timing]:
    """Start one generation; its chunks stamped as they arrive, and its timing so far."""
    # Refusals (too long, bad schema) still get a plain error status: nothing is sent yet.
    chunks = await gen.streamed()
    first = time.perf_counter_ns()
    # ``loads`` moved: this request waited for the model to load, and says how long.
    load = gen.model.last_load_ns if gen.model.loads != loads else 0

    async def stamped() -> AsyncIterator[replies.Stamped]:
        async for _, chunk in chunks:
            yield replies.Stamped(chunk, time.perf_counter_ns(), datetime.now(UTC))

    return stamped(), replies.Timing(start=begun, first=first, load=load)


def _ndjson(lines: AsyncIterator[BaseModel]) -> StreamingResponse:
    # Headers are gone once the first line is out: an error is the last line.
    return ndjson(
        lines, frame=replies.to_ndjson_line, error=lambda e: replies.to_ndjson_line(error_line(e))
    )


async def _whole(gen: Generation, answer: Awaitable[BaseModel]) -> Response:
    """The answer in one object, unless the client leaves before it is ready."""
    return JSONResponse((await gen.unless_gone(answer)).model_dump())
