"""The Engine interface: what every backend (llama.cpp, transformers, vLLM, an
upstream server) offers to the API layer.

An engine knows nothing about HTTP or any wire format: it takes a
``GenerateRequest`` and yields ``Chunk``s. Validation that needs the tokenizer
(does the prompt fit the context?) happens before the first chunk is yielded, so
callers can await the first chunk and still answer with a clean error status.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from llmkit.core.types import (
    Chunk,
    EmbedRequest,
    EmbedResult,
    EngineInfo,
    GenerateRequest,
    Image,
    RerankRequest,
    RerankResult,
)
from llmkit.engines.embedding import cannot_embed
from llmkit.engines.rerank import cannot_rerank
from llmkit.errors import VisionUnsupportedError


class LocalEngineOptions(BaseModel):
    """What every engine that runs the model in this process takes (llama.cpp,
    transformers); each adds its own. Unknown keys are refused before loading."""

    model_config = ConfigDict(extra="forbid")

    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Context length per sequence (default: the model's own, capped for memory).",
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for the model (default: all usable)."
    )
    parallel: int = Field(
        default=4, ge=1, le=64, description="Sequences decoded together in one batch."
    )
    max_queue: int = Field(
        default=64, ge=0, description="Requests that may wait for a free sequence before 503."
    )


def normalise_dtype(v: str) -> str:
    """A dtype as torch and vLLM name it; the short names people type are accepted."""
    v = {"half": "float16", "float": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(v, v)
    if v not in ("auto", "float32", "float16", "bfloat16"):
        raise ValueError("must be auto, float32, float16 or bfloat16")
    return v


class Engine(ABC):
    #: Whether requests may offer tools (the API answers 400 for those it can't).
    supports_tools: bool = False
    #: Whether requests may ask for log-probabilities (``GenerateRequest.logprobs``).
    supports_logprobs: bool = False

    @abstractmethod
    def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        """Stream one generation. Closing the iterator early aborts it and frees
        whatever the engine held for it (its slot, its KV cache)."""

    @abstractmethod
    async def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    @abstractmethod
    async def detokenize(self, ids: list[int]) -> str: ...

    async def encode(self, req: GenerateRequest) -> list[int] | None:
        """The prompt tokens ``req`` would be decoded from (chat template applied),
        or None when the engine cannot tell (a remote server)."""
        return None

    async def image_tokens(self, image: Image) -> int:
        """Prompt positions ``image`` takes on this model (its embeddings and the
        tokens around them): what usage and the context budget count for it.
        VisionUnsupportedError where the model takes no images."""
        info = self.info
        raise VisionUnsupportedError(info.model, list(info.capabilities))

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        """One vector per input, in order. An engine that cannot embed answers 400."""
        raise cannot_embed(self.info.engine)

    async def rerank(self, req: RerankRequest) -> RerankResult:
        """One relevance score per document, in order. An engine whose model is no
        reranker answers 400."""
        raise cannot_rerank(self.info.engine)

    @property
    @abstractmethod
    def info(self) -> EngineInfo: ...

    @property
    def context_length(self) -> int:
        return self.info.context_length

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load weights or connect; called once before the first request."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything; ends generations still running."""

    async def health(self) -> bool:
        return True

    def finish_all(self) -> int:
        """End every running generation now with its final chunk (server shutdown);
        return how many there were."""
        return 0

    def load(self) -> tuple[int, int]:
        """(generations running, requests queued)"""
        return (0, 0)

    def kv_cache(self) -> dict[str, int]:
        """KV-cache cells by state ("used" by running sequences, "cached" for reuse,
        "free"), where the engine keeps one; empty otherwise."""
        return {}

    def speculation(self) -> dict[str, int]:
        """Speculative decoding's counts since the model loaded: tokens "drafted",
        "accepted", and "verify_steps" (a sequence's drafts checked in one step);
        empty where the engine does none."""
        return {}
