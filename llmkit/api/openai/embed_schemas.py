"""Wire models of OpenAI's embeddings endpoint (``POST /v1/embeddings``).

Kept apart from the chat and completions models in ``schemas``: the two
endpoints share nothing but the request base and the error shape.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llmkit.api.limits import Sizes
from llmkit.api.openai.schemas import OpenAIRequest


class EmbeddingRequest(OpenAIRequest):
    model: str
    # A text, texts, token ids, or lists of token ids (what tiktoken users send).
    input: str | list[str] | list[int] | list[list[int]] = Field(union_mode="left_to_right")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def sizes(self) -> Sizes:
        """The inputs ``api.limits`` bounds (--max-inputs, OpenAI's own 2,048 by default)."""
        x = self.input
        one = isinstance(x, str) or all(isinstance(v, int) for v in x)
        return Sizes(inputs=1 if one else len(x))


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # base64: the vector's little-endian float32 bytes, as OpenAI sends them.
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
