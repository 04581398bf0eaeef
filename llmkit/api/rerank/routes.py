"""``POST /v1/rerank``, ``/rerank`` and ``/v2/rerank``: HTTP only; translation lives
in ``convert``.

Sizes are checked first (``--max-inputs`` documents), then the model: one that
cannot rerank is a 400 naming the served models that can.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmkit.api import limits
from llmkit.api.generation import registry, served
from llmkit.api.rerank import convert
from llmkit.api.rerank import schemas as s
from llmkit.core.types import RerankRequest, RerankResult
from llmkit.errors import InvalidRequestError

router = APIRouter()


async def _rerank(request: Request, model: str, req: RerankRequest) -> RerankResult:
    found = served(request, model)
    if "rerank" not in found.info.capabilities:
        can = [m.name for m in registry(request).models if "rerank" in m.info.capabilities]
        which = (
            f"Models here that rerank: {', '.join(can)}."
            if can
            else (
                "No model served here reranks; serve a reranker (a cross-encoder such as a "
                "bge-reranker GGUF)."
            )
        )
        raise InvalidRequestError(
            f"{model} cannot rerank (it is no reranker). {which}", param="model"
        )
    return await found.engine.rerank(req)


@router.post("/v1/rerank", response_model=None)
@router.post("/rerank", response_model=None)
async def rerank(body: s.RerankRequest, request: Request) -> JSONResponse:
    limits.check(request, body.sizes())
    result = await _rerank(request, body.model, convert.to_core(body.query, body.documents))
    answer = convert.to_rerank_response(body, result)
    return JSONResponse(answer.model_dump(exclude_none=True))


@router.post("/v2/rerank", response_model=None)
async def cohere_rerank(body: s.CohereRerankRequest, request: Request) -> JSONResponse:
    limits.check(request, body.sizes())
    result = await _rerank(request, body.model, convert.to_core(body.query, body.documents))
    return JSONResponse(convert.to_cohere_response(body, result).model_dump())
