"""Ollama's ``POST /api/embed`` and ``POST /api/embeddings``: HTTP only;
translation lives in ``embed_convert``.

As with chat and generate, a request with nothing to embed loads the model (and
keeps it for ``keep_alive``) and answers with no vectors.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from llmkit.api import limits
from llmkit.api.ollama import embed_convert as convert
from llmkit.api.ollama import embed_schemas as s

# The model lookup (":latest" names) and keep_alive rule are those of chat and generate.
from llmkit.api.ollama.routes import JsonBodyRoute, _keep_alive, _model

router = APIRouter(prefix="/api", route_class=JsonBodyRoute)


@router.post("/embed")
async def embed(request: Request, body: s.EmbedRequest) -> s.EmbedResponse:
    limits.check(request, body.sizes())
    model = _model(request, body.model)
    start, loads = time.perf_counter_ns(), model.loads
    inputs = convert.embed_inputs(body)
    if inputs is None:
        await model.keep(_keep_alive(model, body))
        result = None
    else:
        model.hold(_keep_alive(model, body))
        result = await model.engine.embed(convert.from_embed_request(body, inputs))
    # ``loads`` moved: this request waited for the model to load, and says how long.
    load = model.last_load_ns if model.loads != loads else 0
    total = time.perf_counter_ns() - start
    return convert.to_embed_response(body.model, result, total_ns=total, load_ns=load)


@router.post("/embeddings")
async def embeddings(request: Request, body: s.EmbeddingsRequest) -> s.EmbeddingsResponse:
    model = _model(request, body.model)
    if not body.prompt:
        await model.keep(_keep_alive(model, body))
        return convert.to_embeddings_response(None)
    model.hold(_keep_alive(model, body))
    return convert.to_embeddings_response(
        await model.engine.embed(convert.from_embeddings_request(body))
    )
