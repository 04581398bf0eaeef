"""The asyncio face shared by the engines that run the model in this process
(llama.cpp, transformers): a request prepared off the event loop and within a
time budget (prompt to tokens, the context budget, the sequence's sampler and
grammar: ``budget``), checked before the first chunk, and handed to the shared
``DecodeLoop``.

A subclass says how to load its model (into a ``Backend`` for the loop), how a
request becomes prompt tokens and what each sequence carries (its sampler);
tool calls are parsed out of the text here, the same for both (``tool_syntax``);
generation, shutdown and the busy rule are the loop's, the same for both.

Embeddings do not go through the decode loop: a subclass that can embed runs its
batches (``embed_ids``) in a worker thread, one request at a time, beside the
loop, so chat keeps streaming while a long list is embedded.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar

from llmkit.core.types import (
    Chunk,
    EmbedRequest,
    EmbedResult,
    GenerateRequest,
    Message,
    Tool,
    Usage,
)
from llmkit.engines import embedding
from llmkit.engines.base import Engine
from llmkit.engines.budget import within_budget
from llmkit.engines.decode_loop import Backend, DecodeLoop, Sequence
from llmkit.engines.textstream import TextStream
from llmkit.engines.tool_syntax import ToolCallParser, with_tool_calls
from llmkit.errors import ContextLengthError, EngineError, InvalidRequestError


class Loaded(Protocol):
    """What the shared code asks of an engine's loaded model."""

    n_ctx: int  # tokens each sequence may hold, prompt and reply
    n_vocab: int


M = TypeVar("M", bound=Loaded)


class LocalEngine(Engine, Generic[M]):
    #: The engine's name in messages and in the decode thread's name.
    label: str = "local"
    supports_tools = True
    supports_logprobs = True

    def __init__(self, *, max_queue: int) -> None:
        self.max_queue = max_queue
        self._lm: M | None = None
        self._loop: DecodeLoop[Any] | None = None
        # One embedding job at a time, and none while the model is being freed.
        self._embedding = asyncio.Lock()

    # -- what a subclass supplies ------------------------------------------------

    @abstractmethod
    def _load(self) -> tuple[M, Backend[Any]]:
        """Load the model (blocking: runs in a worker thread); it and its stepper."""

    @abstractmethod
    def _unload(self, lm: M) -> None:
        """Free the model; the decode loop has stopped."""

    @abstractmethod
    def chat_tokens(self, messages: tuple[Message, ...], tools: tuple[Tool, ...]) -> list[int]:
        """Messages (and the tools offered) through the model's chat template, tokenized."""

    @abstractmethod
    def prompt_text_tokens(self, text: str) -> list[int]:
        """A raw prompt (the completions API), tokenized as the model expects."""

    @abstractmethod
    def tokenize_text(self, text: str, special: bool) -> list[int]:
        """What the ``/tokenize`` endpoint shows for ``text``."""

    @abstractmethod
    def detokenize_ids(self, ids: list[int]) -> str: ...

    @abstractmethod
    def new_state(self, req: GenerateRequest, prompt: list[int]) -> Any:
        """The engine's own per-sequence state (a sampler); may refuse the request.
        Runs in a worker thread (a grammar takes a while to build)."""

    def drop_state(self, state: Any) -> None:
        """Free a state made for a request that was given up before it ran."""

    # -- what a subclass that embeds supplies -----------------------------------------

    def embed_ids(self, seqs: list[list[int]]) -> list[list[float]]:
        """One pooled vector per token list (blocking: runs in a worker thread); every
        list fits ``embed_context``."""
        raise embedding.cannot_embed(self.label)

    def embed_text_tokens(self, text: str) -> list[int]:
        """An embedding input, tokenized as the model expects."""
        return self.prompt_text_tokens(text)

    @property
    def embed_context(self) -> int:
        """The most tokens one embedding input may have."""
        return self.n_ctx

    @property
    def n_embd(self) -> int:
        """The size of the vectors ``embed_ids`` returns."""
        raise embedding.cannot_embed(self.label)

    # -- lifetime -------------------------------------------------------------------

    async def start(self) -> None:
        self._lm, backend = await asyncio.to_thread(self._load)
        self._loop = DecodeLoop(backend, max_queue=self.max_queue, name=f"llmkit-{self.label}")

    async def close(self) -> None:
        if self._loop is not None:
            await asyncio.to_thread(self._loop.close)
            self._loop = None
        async with self._embedding:  # an embedding batch in a thread still reads the model
            if self._lm is not None:
                lm, self._lm = self._lm, None
                self._unload(lm)

    @property
    def lm(self) -> M:
        if self._lm is None:
            raise EngineError(f"The {self.label} engine is not started.")
        return self._lm

    @property
    def n_ctx(self) -> int:
        return self.lm.n_ctx

    @property
    def n_vocab(self) -> int:
        return self.lm.n_vocab

    def load(self) -> tuple[int, int]:
        return self._loop.load if self._loop else (0, 0)

    def finish_all(self) -> int:
        return self._loop.finish_all() if self._loop else 0

    def kv_cache(self) -> dict[str, int]:
        return self._loop.backend.kv_cache() if self._loop else {}

    # -- tokens ---------------------------------------------------------------------

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return await asyncio.to_thread(self.tokenize_text, text, special)

    async def detokenize(self, ids: list[int]) -> str:
        check_token_ids(ids, self.n_vocab, "tokens")
        return await asyncio.to_thread(self.detokenize_ids, ids)

    async def encode(self, req: GenerateRequest) -> list[int]:
        # Rendering a long chat and tokenizing it takes a while: never on the event loop.
        return await within_budget(lambda: self.prompt_tokens(req))

    def prompt_tokens(self, req: GenerateRequest) -> list[int]:
        if req.messages is not None:
            return self.chat_tokens(req.messages, req.tools if req.offers_tools else ())
        if isinstance(req.prompt, tuple):
            check_token_ids(list(req.prompt), self.n_vocab, "prompt")
            return list(req.prompt)
        return self.prompt_text_tokens(req.prompt or "")

    # -- generation -------------------------------------------------------------------

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        loop = self._loop  # taken now: a close while the prompt renders ends this one cleanly
        if loop is None:
            raise EngineError(f"The {self.label} engine is not started.")
        prompt, max_tokens, state = await within_budget(
            lambda: self._prepare(req), discard=lambda made: self.drop_state(made[2])
        )
        seq = Sequence(
            prompt=prompt,
            state=state,
            max_tokens=max_tokens,
            text=TextStream(req.stop),
            ignore_eos=req.ignore_eos,
            logprobs=req.logprobs,
        )
        chunks = loop.stream(seq)
        if req.offers_tools:
            one = 1 if not req.parallel_tool_calls else None
            # Read from the decode thread's side: a figure may be a token behind.
            usage = lambda: Usage(len(prompt), seq.n_generated, seq.cached)  # noqa: E731
            chunks = with_tool_calls(chunks, ToolCallParser(max_calls=one), usage)
        async for chunk in chunks:
            yield chunk

    def _prepare(self, req: GenerateRequest) -> tuple[list[int], int, Any]:
        """The prompt's tokens, the reply's token budget and the sequence's state
        (blocking: runs in a worker thread)."""
        prompt = self.prompt_tokens(req)
        if not prompt:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        max_tokens = reply_budget(len(prompt), req.max_tokens, self.n_ctx, req.context_limit)
        # Settled by the served model already; not so when the engine is driven alone.
        return prompt, max_tokens, self.new_state(req.settled(), prompt)

    # -- embeddings -------------------------------------------------------------------

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        embedding.check_dimensions(req.dimensions, self.n_embd)
        seqs = await asyncio.to_thread(self._embed_inputs, req)
        async with self._embedding:
            if self._lm is None:
                raise EngineError(f"The {self.label} engine is not started.")
            vectors = await asyncio.to_thread(self.embed_ids, seqs)
        return EmbedResult(
            embedding.finish(vectors, dimensions=req.dimensions, normalize=req.normalize),
            prompt_tokens=sum(len(s) for s in seqs),
        )

    def _embed_inputs(self, req: EmbedRequest) -> list[list[int]]:
        seqs = []
        for x in req.inputs:
            if isinstance(x, tuple):
                check_token_ids(list(x), self.n_vocab, "input")
                seqs.append(list(x))
            else:
                seqs.append(self.embed_text_tokens(x) if x else [])
        limit = self.embed_context
        if req.context_limit is not None:
            limit = min(limit, req.context_limit)
        return embedding.fit_inputs(seqs, limit, truncate=req.truncate)


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


def check_token_ids(ids: list[int], n_vocab: int, param: str) -> None:
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        raise InvalidRequestError(
            f"Token ids must be in 0..{n_vocab - 1}; got {bad[:5]}.", param=param
        )
