"""Ollama's embedding requests and responses, to and from the core types: pure
functions, no HTTP; the routes read the clocks and hand the times in."""

from __future__ import annotations

from llmkit.api.ollama import embed_schemas as s
from llmkit.core.types import EmbedRequest, EmbedResult
from llmkit.errors import InvalidRequestError


def embed_inputs(req: s.EmbedRequest) -> list[str] | None:
    """The texts to embed; None when there are none to embed (no input, or an
    empty string): Ollama then only loads the model."""
    if req.input is None or req.input == "":
        return None
    if isinstance(req.input, str):
        return [req.input]
    if not req.input:
        raise InvalidRequestError("input must not be an empty list.", param="input")
    return req.input


def _context_limit(req: s.EmbedFields) -> int | None:
    return req.options.num_ctx if req.options else None


def from_embed_request(req: s.EmbedRequest, inputs: list[str]) -> EmbedRequest:
    """``/api/embed``: vectors L2-normalised, as Ollama documents; long inputs cut
    to the context unless ``truncate`` is false."""
    return EmbedRequest(
        inputs=tuple(inputs),
        truncate=req.truncate,
        dimensions=req.dimensions,
        normalize=True,
        context_limit=_context_limit(req),
    )


def from_embeddings_request(req: s.EmbeddingsRequest) -> EmbedRequest:
    """``/api/embeddings``: the model's vector as it is (Ollama does not normalise
    it), and an input longer than the context refused, not cut."""
    return EmbedRequest(
        inputs=(req.prompt or "",), normalize=False, context_limit=_context_limit(req)
    )


def to_embed_response(
    model: str, result: EmbedResult | None, *, total_ns: int, load_ns: int
) -> s.EmbedResponse:
    return s.EmbedResponse(
        model=model,
        embeddings=[list(v) for v in result.embeddings] if result else [],
        total_duration=total_ns,
        load_duration=load_ns,
        prompt_eval_count=result.prompt_tokens if result else 0,
    )


def to_embeddings_response(result: EmbedResult | None) -> s.EmbeddingsResponse:
    return s.EmbeddingsResponse(embedding=list(result.embeddings[0]) if result else [])
