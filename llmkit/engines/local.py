"""The asyncio face shared by the engines that run the model in this process
(llama.cpp, transformers): a request prepared off the event loop and within a
time budget (prompt to tokens, the context budget, the sequence's sampler and
grammar: ``budget``), checked before the first chunk, and handed to the shared
``DecodeLoop``.

A subclass says how to load its model (into a ``Backend`` for the loop), how a
request becomes prompt tokens and what each sequence carries (its sampler);
generation, shutdown and the busy rule are the loop's, the same for both.

Reasoning models and tool calls are the same for both too. At load the model's
family is found from its chat template and metadata (``families.detect``). A
chat request's prompt gets the family's thinking switch (``think``, ``effort``)
as template variables, and every chat reply is read by the family's parser on
the decode thread (``reply``): the answer, the thinking and the calls apart,
the thinking closed by the engine when its budget is spent. Raw prompts (the
completions API) stay raw text. With no tools offered the parser is asked for
no calls (``max_calls=0``): a model that writes call markup anyway has it in
its answer, as it wrote it (a family that cannot think has then nothing to
take out, and its reply is not parsed at all).

Embeddings do not go through the decode loop: a subclass that can embed runs its
batches (``embed_ids``) in a worker thread, one request at a time, beside the
loop, so chat keeps streaming while a long list is embedded.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from llmkit.core.types import (
    Chunk,
    EmbedRequest,
    EmbedResult,
    GenerateRequest,
    Image,
    Message,
    Tool,
)
from llmkit.engines import embedding
from llmkit.engines.base import Engine
from llmkit.engines.budget import within_budget
from llmkit.engines.decode_loop import Backend, DecodeLoop, Sequence
from llmkit.engines.families import Family
from llmkit.engines.families.table import GENERIC
from llmkit.engines.media import request_images, with_markers
from llmkit.engines.reply import Reply, thinking_budget
from llmkit.engines.textstream import TextStream
from llmkit.errors import (
    ContextLengthError,
    EngineError,
    InvalidRequestError,
    ThinkingUnsupportedError,
    VisionUnsupportedError,
)

log = logging.getLogger("llmkit.engine")


class Loaded(Protocol):
    """What the shared code asks of an engine's loaded model."""

    n_ctx: int  # tokens each sequence may hold, prompt and reply
    n_vocab: int


M = TypeVar("M", bound=Loaded)


@dataclass
class Prepared:
    """A request made ready off the event loop: what the decode loop runs."""

    prompt: list[int]
    max_tokens: int
    state: Any  # the engine's own (``new_state``)
    reply: Reply | None  # a chat reply's parser; None for a raw prompt


class LocalEngine(Engine, Generic[M]):
    #: The engine's name in messages and in the decode thread's name.
    label: str = "local"
    supports_tools = True
    supports_logprobs = True

    def __init__(self, *, max_queue: int) -> None:
        self.max_queue = max_queue
        self._lm: M | None = None
        self._loop: DecodeLoop[Any] | None = None
        #: The model's family (thinking, call syntax), found when it loads.
        self.family: Family = GENERIC
        self._close: tuple[int, ...] = ()  # ``family.close_thinking``, tokenized
        self._open: tuple[int, ...] = ()  # ``family.open_thinking``, tokenized
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
    def find_family(self) -> Family:
        """The loaded model's family, from its chat template and metadata (``detect``)."""

    @abstractmethod
    def chat_text(
        self, messages: tuple[Message, ...], tools: tuple[Tool, ...], variables: dict[str, Any]
    ) -> str:
        """Messages (and the tools offered) through the model's chat template, with
        ``variables`` (the family's thinking switch) for the template."""

    @abstractmethod
    def chat_text_tokens(self, text: str) -> list[int]:
        """A rendered chat prompt, tokenized as the model expects (its BOS rule)."""

    @abstractmethod
    def prompt_text_tokens(self, text: str) -> list[int]:
        """A raw prompt (the completions API), tokenized as the model expects."""

    @abstractmethod
    def tokenize_text(self, text: str, special: bool) -> list[int]:
        """What the ``/tokenize`` endpoint shows for ``text``."""

    @abstractmethod
    def detokenize_ids(self, ids: list[int]) -> str: ...

    @abstractmethod
    def new_state(self, req: GenerateRequest, prompt: list[int], after_thinking: bool) -> Any:
        """The engine's own per-sequence state (a sampler); may refuse the request.
        ``after_thinking``: the reply starts (or may start) with thinking, and a
        grammar the request asks for holds only what follows it
        (``Backend.answer_starts``). Runs in a worker thread (a grammar takes a
        while to build)."""

    # -- what a subclass that sees images supplies ------------------------------------

    @property
    def image_marker(self) -> str | None:
        """The text that stands for an image in a rendered chat prompt; None: the
        model takes no images."""
        return None

    def chat_image_tokens(self, text: str, images: list[Image]) -> list[int]:
        """A rendered chat prompt with one ``image_marker`` per image, in order, as
        tokens and image placeholders (``engines.media.ImagePrompt``)."""
        raise self.no_vision()

    def no_vision(self) -> VisionUnsupportedError:
        info = self.info
        return VisionUnsupportedError(info.model, list(info.capabilities))

    async def image_tokens(self, image: Image) -> int:
        if self.image_marker is None:
            raise self.no_vision()
        return await asyncio.to_thread(
            lambda: len(self.chat_image_tokens(self.image_marker or "", [image]))
        )

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
        backend = await asyncio.to_thread(self._start)
        self._loop = DecodeLoop(backend, max_queue=self.max_queue, name=f"llmkit-{self.label}")

    def _start(self) -> Backend[Any]:
        self._lm, backend = self._load()
        family = self.find_family()
        close = family.close_thinking
        self._close = tuple(self.tokenize_text(close, True)) if close else ()
        opening = family.open_thinking
        self._open = tuple(self.tokenize_text(opening, True)) if opening else ()
        self.family = family
        thinking = "thinks" if family.thinks else "does not think"
        log.info("%s: chat family %s (%s)", self.label, family.name, thinking)
        return backend

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

    def speculation(self) -> dict[str, int]:
        return self._loop.backend.speculation() if self._loop else {}

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
        return self._prompt(req)[1]

    def _prompt(self, req: GenerateRequest) -> tuple[GenerateRequest, list[int], bool]:
        """The request as it runs, its prompt's tokens, and whether the prompt leaves
        the reply inside the thinking."""
        if req.messages is None:
            if isinstance(req.prompt, tuple):
                check_token_ids(list(req.prompt), self.n_vocab, "prompt")
                return req, list(req.prompt), False
            return req, self.prompt_text_tokens(req.prompt or ""), False
        prompt, opens = self._chat(req, req.messages)
        if self._held_unasked(req):
            # A grammar holds the whole answer, and the model would open its thinking
            # itself (Qwen3): whether a reply starts with thinking is known only once
            # it has, too late for a grammar that must hold the answer's first token.
            # Where the prompt opens it (Qwen3.5), a call the model starts inside its
            # thinking ends the thinking mid-call, too late for the grammar's start.
            # Thinking was not asked for, and the family can switch it off: off,
            # where the switch leaves the prompt with the thinking closed.
            off = replace(req, think=False)
            off_prompt, off_opens = self._chat(off, off.messages)
            if not off_opens:
                req, prompt, opens = off, off_prompt, off_opens
        return req, prompt, opens

    def _chat(self, req: GenerateRequest, messages: tuple[Message, ...]) -> tuple[list[int], bool]:
        variables = self.family.template_variables(req.think, req.effort)
        tools = req.tools if req.offers_tools else ()
        images = request_images(messages)
        if images:
            marker = self.image_marker
            if marker is None:
                raise self.no_vision()
            messages = with_markers(messages, marker)
        text = self.chat_text(messages, tools, dict(variables))
        tokens = self.chat_image_tokens(text, images) if images else self.chat_text_tokens(text)
        return tokens, self.family.opens_thinking(text)

    # -- generation -------------------------------------------------------------------

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        loop = self._loop  # taken now: a close while the prompt renders ends this one cleanly
        if loop is None:
            raise EngineError(f"The {self.label} engine is not started.")
        if req.think and not self.family.thinks:
            raise ThinkingUnsupportedError(self.info.model)
        made = await within_budget(
            lambda: self._prepare(req), discard=lambda made: self.drop_state(made.state)
        )
        seq = Sequence(
            prompt=made.prompt,
            state=made.state,
            max_tokens=made.max_tokens,
            text=TextStream(req.stop),
            ignore_eos=req.ignore_eos,
            logprobs=req.logprobs,
            reply=made.reply,
            # A family's markers may be control tokens; the generic family has none.
            special=made.reply is not None and self.family.name != GENERIC.name,
        )
        if made.reply is not None:  # a budget of 0 closes the thinking before it starts
            seq.force(made.reply.to_force())
        async for chunk in loop.stream(seq):
            yield chunk

    def _prepare(self, req: GenerateRequest) -> Prepared:
        """The prompt's tokens, the reply's token budget, its parser and the
        sequence's state (blocking: runs in a worker thread)."""
        # Settled by the served model already; not so when the engine is driven alone.
        req, prompt, opens = self._prompt(req.settled())
        if not prompt:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        max_tokens = reply_budget(len(prompt), req.max_tokens, self.n_ctx, req.context_limit)
        # The reply may think first unless the family has switched its thinking off:
        # a grammar then waits for the thinking to end.
        thinks = opens or (self.family.thinks and not self._thinking_off(req))
        # A family that cannot think, offered no tools, has nothing to take out of a
        # reply: its text is the answer as it is (what max_calls=0 would give).
        plain = req.messages is None or not (req.offers_tools or self.family.thinks)
        reply = None if plain else self._reply(req, opens, thinks, self._held(req))
        state = self.new_state(req, prompt, reply is not None and thinks)
        return Prepared(prompt, max_tokens, state, reply)

    @staticmethod
    def _held(req: GenerateRequest) -> bool:
        """JSON output or a forced call: a grammar for the whole answer."""
        if req.offers_tools:
            return req.tool_choice == "required"
        return req.messages is not None and req.sampling.response_format == "json"

    def _held_unasked(self, req: GenerateRequest) -> bool:
        """JSON output or a forced call (a grammar for the whole answer), thinking
        not asked for (nor an effort), from a family that can switch it off."""
        return (
            self._held(req)
            and req.think is None
            and req.effort is None
            and req.messages is not None
            and self.family.thinking_optional
        )

    def _thinking_off(self, req: GenerateRequest) -> bool:
        """Did the template switch the thinking off? (``think=False`` for a family
        that cannot switch it off is taken, and its thinking still split out.)"""
        return req.think is False and self.family.thinking_optional

    def _reply(self, req: GenerateRequest, opens: bool, thinks: bool, held: bool) -> Reply:
        family = self.family
        # A named function or parallel calls off: one call, and the reply ends there.
        one = req.offers_tools and (req.tool_name is not None or not req.parallel_tool_calls)
        # No tools offered: calls are not looked for (0), the thinking is still split out.
        max_calls = (1 if one else None) if req.offers_tools else 0
        return Reply(
            family.parser(thinking=opens, max_calls=max_calls),
            one_call=one,
            # Thinking switched off: no budget (nothing is forced past a grammar).
            budget=thinking_budget(req, family) if thinks else None,
            close=self._close,
            # A grammar for the whole answer waits for the thinking's end; a model
            # that would think (the family cannot switch it off) but starts with
            # its answer would find the grammar never bound: the thinking is
            # opened for it, and ends by the model or by the budget.
            open_first=self._open if held and thinks and not opens else (),
        )

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
