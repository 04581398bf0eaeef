"""The Engine interface: what every backend (llama.cpp, transformers, vLLM, an
upstream server) offers to the API layer.

An engine knows nothing about HTTP or any wire format: it takes a
``GenerateRequest`` and yields ``Chunk``s. Validation that needs the tokenizer
(does the prompt fit the context?) happens before the first chunk is yielded, so
callers can await the first chunk and still answer with a clean error status.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from llmkit.core.types import Chunk, EngineInfo, GenerateRequest
from llmkit.errors import ContextLengthError, InvalidRequestError, LlmkitError


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


def reply_budget(n_prompt: int, max_tokens: int | None, n_ctx: int, limit: int | None) -> int:
    """Tokens the reply may take: ``max_tokens``, or the rest of the context when
    None; ContextLengthError when the prompt (plus ``max_tokens``) does not fit.
    ``limit``: a request's own smaller context (Ollama's ``num_ctx``)."""
    n_ctx = n_ctx if limit is None else min(limit, n_ctx)
    if n_prompt + (max_tokens or 0) > n_ctx or (max_tokens is None and n_prompt >= n_ctx):
        raise ContextLengthError(
            prompt_tokens=n_prompt, max_tokens=max_tokens, context_length=n_ctx
        )
    return n_ctx - n_prompt if max_tokens is None else max_tokens


async def relay(queue: asyncio.Queue[Chunk | LlmkitError | None]) -> AsyncIterator[Chunk]:
    """The chunks a decode thread puts on ``queue`` until it puts None; an error it
    puts there is raised here, in the request's coroutine."""
    while True:
        item = await queue.get()
        if item is None:
            return
        if isinstance(item, LlmkitError):
            raise item
        yield item


def check_token_ids(ids: list[int], n_vocab: int, param: str) -> None:
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        raise InvalidRequestError(
            f"Token ids must be in 0..{n_vocab - 1}; got {bad[:5]}.", param=param
        )
