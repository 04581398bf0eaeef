"""What every engine that reranks shares, as pure functions: the 400 of a model
that cannot, and each (query, document) pair held to the model's context.

A reranker (a cross-encoder) reads the query and one document together and
gives one number, the pair's relevance. The engines build the pairs' tokens in
the model's own way and run the model; the rules users see (which document is
too long, and by how much) are the same whichever engine answers.
"""

from __future__ import annotations

from llmkit.errors import InvalidRequestError


def cannot_rerank(engine: str, why: str = "") -> InvalidRequestError:
    """The 400 an engine answers when its model cannot rerank (the API adds the
    served models that can)."""
    return InvalidRequestError(
        f"This model cannot rerank: the {engine} engine {why or 'serves it for other work'}.",
        param="model",
    )


def cannot_generate(model: str) -> InvalidRequestError:
    """The 400 a reranker answers a generation request with."""
    return InvalidRequestError(
        f"{model} is a reranker (a cross-encoder): it scores documents against a query "
        "at /v1/rerank and generates no text.",
        param="model",
    )


def fit_pairs(pairs: list[list[int]], limit: int) -> None:
    """Refuse, naming the document, a pair of more than ``limit`` tokens: a
    cross-encoder reads the query and the document whole, so neither may be cut."""
    for i, ids in enumerate(pairs):
        if len(ids) > limit:
            raise InvalidRequestError(
                f"documents[{i}] with the query makes {len(ids)} tokens, more than the "
                f"{limit} tokens this reranker reads at once; shorten the document (or the "
                "query), or split it into passages.",
                param="documents",
            )
