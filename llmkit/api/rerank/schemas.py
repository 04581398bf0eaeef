"""Wire models of the rerank endpoints.

``/v1/rerank`` and ``/rerank`` take what llama-server, vLLM and Jina take (and
Cohere's v1, which is the same request): ``query``, ``documents`` (texts, or
objects with a ``text``), ``top_n`` and ``return_documents``, and answer
``results`` of ``index``, ``relevance_score`` and, when asked, ``document``,
best first, with ``usage``. ``/v2/rerank`` is Cohere's v2: texts only, and
``meta`` in place of ``usage``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llmkit.api.limits import Sizes
from llmkit.api.openai.schemas import OpenAIRequest


class TextDocument(BaseModel):
    text: str


class RerankRequest(OpenAIRequest):
    model: str
    query: str
    documents: list[str | TextDocument]
    # None or 0 (vLLM's default): every document; more than there are: every document.
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True  # Jina's and vLLM's default (Cohere v1's is false)

    def sizes(self) -> Sizes:
        """The documents ``api.limits`` bounds (--max-inputs)."""
        return Sizes(inputs=len(self.documents), inputs_param="documents")


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: TextDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"  # as llama-server says it
    model: str
    results: list[RerankResult]
    usage: RerankUsage


class CohereRerankRequest(OpenAIRequest):
    model: str
    query: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=1)
    # Accepted; a document too long for the model is refused, not cut (see the docs).
    max_tokens_per_doc: int | None = Field(default=None, ge=1)

    def sizes(self) -> Sizes:
        return Sizes(inputs=len(self.documents), inputs_param="documents")


class CohereResult(BaseModel):
    index: int
    relevance_score: float


class CohereApiVersion(BaseModel):
    version: str = "2"


class CohereBilledUnits(BaseModel):
    search_units: int = 1


class CohereTokens(BaseModel):
    input_tokens: int
    output_tokens: int = 0


class CohereMeta(BaseModel):
    api_version: CohereApiVersion = Field(default_factory=CohereApiVersion)
    billed_units: CohereBilledUnits = Field(default_factory=CohereBilledUnits)
    tokens: CohereTokens


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: CohereMeta
