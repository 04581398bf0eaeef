"""OpenAI's embeddings request and response, to and from the core types: pure
functions, no HTTP."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence

from llmkit.api.openai import embed_schemas as s
from llmkit.core.types import EmbedRequest, EmbedResult
from llmkit.errors import InvalidRequestError


def from_embedding_request(req: s.EmbeddingRequest) -> EmbedRequest:
    """OpenAI's vectors are unit length, so ours are too; an input longer than the
    context is refused (OpenAI has no ``truncate``)."""
    raw = req.input
    if isinstance(raw, str):
        inputs: list[str | tuple[int, ...]] = [raw]
    elif raw and all(isinstance(x, int) for x in raw):
        inputs = [tuple(raw)]  # type: ignore[arg-type]  # one list of token ids
    else:
        inputs = [x if isinstance(x, str) else tuple(x) for x in raw]  # type: ignore[union-attr]
    if not inputs:
        raise InvalidRequestError("input must not be an empty list.", param="input")
    return EmbedRequest(inputs=tuple(inputs), dimensions=req.dimensions, normalize=True)


def base64_floats(vector: Sequence[float]) -> str:
    """The vector as OpenAI's ``encoding_format: base64``: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def to_embedding_response(
    model: str, result: EmbedResult, encoding_format: str
) -> s.CreateEmbeddingResponse:
    def encode(v: tuple[float, ...]) -> list[float] | str:
        return base64_floats(v) if encoding_format == "base64" else list(v)

    n = result.prompt_tokens
    return s.CreateEmbeddingResponse(
        data=[s.Embedding(index=i, embedding=encode(v)) for i, v in enumerate(result.embeddings)],
        model=model,
        usage=s.EmbeddingUsage(prompt_tokens=n, total_tokens=n),
    )
