"""Rerank requests and responses, to and from the core types: pure functions, no
HTTP. Scores come back in the documents' order; the answer lists them best
first (ties keep the documents' order), cut to ``top_n``."""

from __future__ import annotations

import uuid

from llmkit.api.rerank import schemas as s
from llmkit.core.types import RerankRequest, RerankResult
from llmkit.errors import InvalidRequestError


def _texts(documents: list[str | s.TextDocument]) -> tuple[str, ...]:
    return tuple(d if isinstance(d, str) else d.text for d in documents)


def to_core(query: str, documents: list[str | s.TextDocument]) -> RerankRequest:
    if not documents:
        raise InvalidRequestError(
            "documents is empty; give at least one document to rank.", param="documents"
        )
    return RerankRequest(query=query, documents=_texts(documents))


def ranked(scores: tuple[float, ...], top_n: int | None) -> list[tuple[int, float]]:
    """(index, score) pairs, best first, at most ``top_n`` of them (None or 0: all)."""
    order = sorted(enumerate(scores), key=lambda p: -p[1])  # stable: ties in order
    return order[:top_n] if top_n else order


def to_rerank_response(req: s.RerankRequest, result: RerankResult) -> s.RerankResponse:
    texts = _texts(req.documents)
    results = [
        s.RerankResult(
            index=i,
            relevance_score=score,
            document=s.TextDocument(text=texts[i]) if req.return_documents else None,
        )
        for i, score in ranked(result.scores, req.top_n)
    ]
    n = result.prompt_tokens
    return s.RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=req.model,
        results=results,
        usage=s.RerankUsage(prompt_tokens=n, total_tokens=n),
    )


def to_cohere_response(req: s.CohereRerankRequest, result: RerankResult) -> s.CohereRerankResponse:
    return s.CohereRerankResponse(
        id=str(uuid.uuid4()),
        results=[
            s.CohereResult(index=i, relevance_score=score)
            for i, score in ranked(result.scores, req.top_n)
        ],
        meta=s.CohereMeta(tokens=s.CohereTokens(input_tokens=result.prompt_tokens)),
    )
