"""The decode loop shared by the engines that run the model in this process
(llama.cpp, transformers): one thread, one queue, one busy rule, one shutdown.

An engine supplies a ``Backend``: how a sequence takes a slot, how one step runs
over the active sequences (llama.cpp: one ``llama_batch`` over all of them;
transformers: one forward pass each, taking turns), how a token becomes bytes of
text and which tokens end a generation. Everything else lives here, so the two
engines cannot drift apart: admission, cancel, ``max_tokens``, stop strings,
end-of-generation, usage, log-probabilities held with their text, what a
failing step does, and shutdown. A chat reply's text also goes through its
model family's parser here (``reply``): answer, thinking and calls apart, the
thinking budget closed with tokens the loop writes itself (``Sequence.forced``:
the backend feeds them and samples nothing for them), and the reply ended as
soon as it has made the one call it may.

Results go back to asyncio once per step: everything a step produced for every
sequence travels in one ``call_soon_threadsafe`` per event loop, so eight
streams cost one wake-up of the event loop, not eight. The thread never touches
the loop's objects itself.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from llmkit.core.types import Chunk, FinishReason, Logprob, Usage
from llmkit.engines.families.base import Parsed
from llmkit.engines.logprobs import HeldLogprobs
from llmkit.engines.reply import Reply
from llmkit.engines.textstream import TextStream
from llmkit.errors import LlmkitError, ModelFailedError, ServerBusyError

log = logging.getLogger("llmkit.engine")

#: What a sequence hands back: a chunk, an error, or None when it is over.
Item = Chunk | LlmkitError | None
S = TypeVar("S")  # an engine's own per-sequence state (sampler, slot, KV cache)


@dataclass(eq=False)
class Sequence(Generic[S]):
    """One generation. Created on the event loop; after ``submit`` only the decode
    thread changes it (``cancelled`` aside, which only ever goes from False to True)."""

    prompt: list[int]
    state: S
    max_tokens: int
    text: TextStream
    ignore_eos: bool = False
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    pending: int | None = None  # sampled and sent, not yet fed back to the model
    n_generated: int = 0
    cached: int = 0  # prompt tokens the engine found already in its KV cache
    cancelled: bool = False
    # ``GenerateRequest.logprobs``; when set, ``step`` puts the entry of each token
    # it returns in ``scored`` (on the decode thread, as the loop reads it).
    logprobs: int | None = None
    scored: Logprob | None = None
    held: HeldLogprobs = field(default_factory=HeldLogprobs)
    # A chat reply's parser (None: a raw prompt, whose text is the reply as it is).
    reply: Reply | None = None
    # Control tokens' text is part of the reply's text (``Backend.piece``): a model
    # family's markers may be such tokens (gpt-oss's channels, Mistral's
    # ``[THINK]``), and its parser takes them out.
    special: bool = False
    # The next token is this one, not sampled (the backend feeds the one before it
    # and returns this, having its sampler accept it); then those in ``forced``.
    next_forced: int | None = None
    forced: collections.deque[int] = field(default_factory=collections.deque)
    # The answer has started (after thinking: True) while forced tokens were still
    # to be written: ``Backend.answer_starts`` waits for the last of them.
    answer_pending: bool | None = None

    def force(self, tokens: tuple[int, ...]) -> None:
        """Write ``tokens`` next, sampling nothing for them."""
        self.forced.extend(tokens)
        if self.next_forced is None and self.forced:
            self.next_forced = self.forced.popleft()


class Backend(ABC, Generic[S]):
    """What an engine supplies: everything but ``release`` runs on the decode thread."""

    parallel: int  # how many sequences may be active at once

    @abstractmethod
    def admit(self, seq: Sequence[S]) -> None:
        """``seq`` becomes active: give it a slot; set ``seq.cached``."""

    @abstractmethod
    def step(self, active: list[Sequence[S]]) -> list[tuple[Sequence[S], int | Exception]]:
        """Run the model once over ``active``: feed each one's unread prompt (or part
        of it) or its ``pending`` token. Return the token sampled for each sequence
        that has one now, or the exception that ended that sequence alone; raise
        when the whole step failed. A sequence with ``logprobs`` set also gets
        the token's entry in ``scored`` (``logprobs.score``). Where a sequence's
        ``next_forced`` is set, that is its token: nothing is sampled, but its
        sampler takes it as if it had been (penalties, a grammar)."""

    @abstractmethod
    def piece(self, seq: Sequence[S], token: int) -> bytes:
        """The bytes ``token`` adds to ``seq``'s text (with ``seq.special``, a control
        token's text too)."""

    @abstractmethod
    def is_eog(self, token: int) -> bool:
        """Does ``token`` end a generation (unless the request ignores it)?"""

    @abstractmethod
    def release(self, seq: Sequence[S]) -> None:
        """``seq`` is over (or never ran): free its slot, sampler, cache. Called once,
        on the decode thread, or on the event loop for one ``submit`` refused."""

    def answer_starts(self, seq: Sequence[S], after_thinking: bool) -> None:
        """``seq``'s answer starts now: its thinking has just ended
        (``after_thinking``), or it wrote answer text or a call with no thinking
        before. A grammar that holds only the answer starts here (the llama.cpp
        engine's ``Sampler.bind``)."""

    def more(self, seq: Sequence[S]) -> int | None:
        """Speculative decoding: the next token of ``seq`` from the step that just
        ran, after the loop has taken the one before it (``seq.pending``), or None
        when the step has no more for it. A backend that verified drafted tokens
        in the step samples here, one token at a time, so everything the loop
        does between two tokens (stop strings, the reply's parser, a grammar
        bound, tokens forced) happens as it would one step per token. Called
        again after each token taken, until None; where the loop stops asking
        (the sequence ended), ``release`` follows."""
        return None

    def kv_cache(self) -> dict[str, int]:
        """KV-cache cells by state, for ``/metrics``; read from another thread, so
        a figure may be a step old."""
        return {}

    def speculation(self) -> dict[str, int]:
        """Speculative decoding's counts (tokens drafted, accepted, verification
        steps), for ``/metrics`` and ``/health``; empty where there is none."""
        return {}

    def recover(self) -> None:
        """A step raised: forget whatever state it may have left half-written."""

    def close(self) -> None:
        """The thread has ended: free what the backend holds for stepping."""


class DecodeLoop(Generic[S]):
    def __init__(self, backend: Backend[S], *, max_queue: int, name: str) -> None:
        self.backend = backend
        self.max_queue = max_queue
        self._active: list[Sequence[S]] = []
        self._waiting: collections.deque[Sequence[S]] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._outbox: list[tuple[Sequence[S], Item]] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the event loop's side ------------------------------------------------

    async def stream(self, seq: Sequence[S]) -> AsyncIterator[Chunk]:
        """Run ``seq`` and yield its chunks; closing the iterator cancels it."""
        try:
            self.submit(seq)
        except LlmkitError:
            self.backend.release(seq)
            raise
        try:
            async for chunk in relay(seq.queue):
                yield chunk
        finally:
            self.cancel(seq)

    def submit(self, seq: Sequence[S]) -> None:
        with self._cv:
            if self._stopping:
                raise ServerBusyError("The server is shutting down.", retry_after=5)
            # Busy once every free slot has someone waiting for it and the queue is full.
            free = self.backend.parallel - len(self._active)
            if len(self._waiting) >= self.max_queue + free:
                raise ServerBusyError(
                    f"All {self.backend.parallel} sequences are busy and {len(self._waiting)} "
                    "requests are queued; retry shortly.",
                )
            self._waiting.append(seq)
            self._cv.notify()

    def cancel(self, seq: Sequence[S]) -> None:
        with self._cv:
            seq.cancelled = True
            self._cv.notify()

    def finish_all(self) -> int:
        """End every running generation now, each with its final chunk (finish_reason
        "length"), turn away the queued ones, and refuse new ones; how many there were."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
            return len(self._active) + len(self._waiting)

    def close(self) -> None:
        self.finish_all()
        self._thread.join()
        self.backend.close()

    @property
    def load(self) -> tuple[int, int]:
        """(running, queued)"""
        with self._cv:
            return len(self._active), len(self._waiting)

    # -- the decode thread ------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._waiting and not self._active:
                    self._cv.wait()
                if self._stopping:
                    break
                self._drop_cancelled()
                self._admit()
            if self._active:
                self._step()
            self._flush()
        for seq in list(self._active):
            self._finish(seq, "length", flush=True)
        while self._waiting:
            seq = self._waiting.popleft()
            self._post(seq, ServerBusyError("The server is shutting down."))
            self._post(seq, None)
            self.backend.release(seq)
        self._flush()

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._active if s.cancelled]:
            self._end(seq)
        for seq in self._waiting:
            if seq.cancelled:
                self.backend.release(seq)
        self._waiting = collections.deque(s for s in self._waiting if not s.cancelled)

    def _admit(self) -> None:
        while self._waiting and len(self._active) < self.backend.parallel:
            seq = self._waiting.popleft()
            self.backend.admit(seq)
            self._active.append(seq)

    def _step(self) -> None:
        active = list(self._active)
        try:
            results = self.backend.step(active)
        except Exception as e:  # a model failure must not hang the callers
            log.exception("decode step failed")
            self.backend.recover()
            for seq in active:
                self._end(seq, ModelFailedError(f"The model failed: {e}; retry the request."))
            return
        for seq, token in results:
            if seq.cancelled:
                self._end(seq)
            elif isinstance(token, Exception):
                log.error("decode step failed", exc_info=token)
                self._end(seq, ModelFailedError(f"The model failed: {token}; retry the request."))
            else:
                try:
                    self._accept(seq, token)
                    # Drafts the step verified: taken one at a time while they hold.
                    while not seq.cancelled and seq in self._active:
                        more = self.backend.more(seq)
                        if more is None:
                            break
                        self._accept(seq, more)
                except Exception as e:  # a parser's bug ends its reply, not the thread
                    log.exception("reading a reply failed")
                    if seq in self._active:
                        self._end(seq, ModelFailedError(f"The reply could not be read: {e}"))

    def _accept(self, seq: Sequence[S], token: int) -> None:
        seq.n_generated += 1
        forced = seq.next_forced is not None
        seq.next_forced = seq.forced.popleft() if seq.forced else None
        scored, seq.scored = seq.scored, None
        if not forced and not seq.ignore_eos and self.backend.is_eog(token):
            # The end-of-generation token is no part of the text: not reported.
            self._finish(seq, "stop", flush=True, token=token)
            return
        piece = self.backend.piece(seq, token)
        if scored is not None:
            seq.held.add(scored, piece)
        delta = seq.text.push(piece)
        reply = seq.reply
        out = Parsed(delta) if reply is None else reply.push(delta, forced=forced)
        if reply is not None:
            if reply.answer_now:
                seq.answer_pending = reply.after_thinking
            # The answer's grammar binds once the engine's own tokens are written:
            # bound sooner, it would be handed tokens it never chose, and llama.cpp
            # aborts on one its grammar refuses (a budget's close may end the
            # thinking at its first token and write more after it).
            if seq.answer_pending is not None and seq.next_forced is None:
                self.backend.answer_starts(seq, seq.answer_pending)
                seq.answer_pending = None
            if seq.next_forced is None:
                seq.force(reply.to_force())
        if seq.text.stopped or (reply is not None and reply.done):
            self._finish(seq, "stop", out, token=token)
        elif seq.n_generated >= seq.max_tokens:
            self._finish(seq, "length", out, flush=True, token=token)
        else:
            seq.pending = token
            logprobs = seq.held.release(seq.text.sent)
            self._post(seq, _chunk(out, token_ids=(token,), logprobs=logprobs))

    def _finish(
        self,
        seq: Sequence[S],
        reason: FinishReason,
        out: Parsed = Parsed(),  # noqa: B008 - frozen
        *,
        flush: bool = False,
        token: int | None = None,
    ) -> None:
        rest = seq.text.flush() if flush else ""
        reply = seq.reply
        if reply is None:
            out += Parsed(rest)
        else:
            out += reply.finish(rest)
            # A reply that made calls and ended on its own ends in them.
            if reply.calls and reason == "stop":
                reason = "tool_calls"
        # Flushed: every token's text is out. Stopped: those a stop string swallowed stay.
        logprobs = seq.held.release(None if flush else seq.text.sent)
        usage = Usage(
            prompt_tokens=len(seq.prompt),
            completion_tokens=seq.n_generated,
            cached_tokens=seq.cached,
            reasoning_tokens=reply.reasoning_tokens if reply is not None else 0,
        )
        ids = (token,) if token is not None else ()
        chunk = _chunk(
            out,
            token_ids=ids,
            finish_reason=reason,
            usage=usage,
            stop_sequence=seq.text.matched,
            logprobs=logprobs,
        )
        self._post(seq, chunk)
        self._end(seq)

    def _end(self, seq: Sequence[S], error: LlmkitError | None = None) -> None:
        if error is not None:
            self._post(seq, error)
        self._post(seq, None)
        self._active.remove(seq)
        self.backend.release(seq)

    def _post(self, seq: Sequence[S], item: Item) -> None:
        box = self._outbox
        if isinstance(item, Chunk) and box and box[-1][0] is seq:
            # Tokens of one sequence from one step (drafts verified): one chunk, so
            # the event loop does its per-chunk work once per step, not per token.
            merged = _merge(box[-1][1], item)
            if merged is not None:
                box[-1] = (seq, merged)
                return
        box.append((seq, item))

    def _flush(self) -> None:
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Item], Item]]] = {}
        for seq, item in self._outbox:
            by_loop.setdefault(seq.loop, []).append((seq.queue, item))
        self._outbox = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: nobody is listening any more
                pass


def _chunk(out: Parsed, **kw: Any) -> Chunk:
    return Chunk(text=out.content, reasoning=out.reasoning, tool_calls=out.calls, **kw)


def _merge(prev: Item, item: Chunk) -> Chunk | None:
    """``prev`` and ``item`` as one chunk, where nothing is lost by it: no calls,
    no end before ``item``, and answer and thinking not interleaved."""
    if not isinstance(prev, Chunk) or prev.finish_reason is not None:
        return None
    if prev.tool_calls or item.tool_calls:
        return None
    if (prev.reasoning or item.reasoning) and (prev.text or item.text):
        return None
    return Chunk(
        text=prev.text + item.text,
        reasoning=prev.reasoning + item.reasoning,
        token_ids=prev.token_ids + item.token_ids,
        finish_reason=item.finish_reason,
        usage=item.usage,
        stop_sequence=item.stop_sequence,
        logprobs=prev.logprobs + item.logprobs,
    )


def _deliver(items: list[tuple[asyncio.Queue[Item], Item]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)


async def relay(queue: asyncio.Queue[Item]) -> AsyncIterator[Chunk]:
    """The chunks the decode thread puts on ``queue`` until it puts None; an error
    it puts there is raised here, in the request's coroutine."""
    while True:
        item = await queue.get()
        if item is None:
            return
        if isinstance(item, LlmkitError):
            raise item
        yield item
