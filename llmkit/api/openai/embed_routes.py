"""``POST /v1/embeddings``: HTTP only; translation lives in ``embed_convert``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmkit.api import limits
from llmkit.api.generation import served
from llmkit.api.openai import embed_convert as convert
from llmkit.api.openai import embed_schemas as s

router = APIRouter(prefix="/v1")


@router.post("/embeddings", response_model=None)
async def embeddings(body: s.EmbeddingRequest, request: Request) -> JSONResponse:
    limits.check(request, body.sizes())
    model = served(request, body.model)
    result = await model.engine.embed(convert.from_embedding_request(body))
    answer = convert.to_embedding_response(body.model, result, body.encoding_format)
    return JSONResponse(answer.model_dump())
