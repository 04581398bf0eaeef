"""Continuous batching over one llama.cpp context.

One thread owns the context. Each step it gathers the next token of every
generating sequence plus a slice of any prompt still being read, decodes them in
one ``llama_batch``, and samples each sequence with its own sampler chain. New
requests take a free slot between steps; finished or cancelled ones leave at once
and their slot is free for the next. A slot keeps the tokens its KV cache holds,
so a request that starts with the same tokens (the next turn of a chat) reuses
that prefix instead of reading it again.

Results go back to asyncio once per step: everything a step produced for every
sequence travels in one ``call_soon_threadsafe``, so eight streams cost one
wake-up of the event loop, not eight. The thread never touches the loop's objects
itself.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass, field

import llama_cpp

from llmkit.core.types import Chunk, FinishReason, Usage
from llmkit.engines.llamacpp.model import N_BATCH, LoadedModel
from llmkit.engines.llamacpp.sampler import Sampler
from llmkit.engines.textstream import TextStream
from llmkit.errors import EngineError, LlmkitError, ServerBusyError

log = logging.getLogger("llmkit.engine.llamacpp")

#: What a sequence hands back: a chunk, an error, or None when it is over.
Item = Chunk | LlmkitError | None


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    sampler: Sampler
    max_tokens: int
    text: TextStream
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Item]
    slot: int = -1
    n_done: int = 0  # prompt tokens already in the KV cache
    n_generated: int = 0
    pending: int = -1  # sampled, not yet decoded
    cancelled: bool = False
    reused: int = 0  # prompt tokens found in the slot's cache
    ignore_eos: bool = False


@dataclass
class _Slot:
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds, in order
    seq: Sequence | None = None


class Scheduler:
    def __init__(self, lm: LoadedModel, *, max_queue: int = 64) -> None:
        self.lm = lm
        self.max_queue = max_queue
        self._slots = [_Slot() for _ in range(lm.parallel)]
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._outbox: list[tuple[Sequence, Item]] = []
        self._thread = threading.Thread(target=self._run, name="llmkit-llamacpp", daemon=True)
        self._thread.start()

    # -- called from other threads --------------------------------------------

    def submit(self, seq: Sequence) -> None:
        with self._cv:
            if self._stopping:
                raise ServerBusyError("The server is shutting down.", retry_after=5)
            free = sum(1 for s in self._slots if s.seq is None)
            if len(self._waiting) >= self.max_queue + free:
                raise ServerBusyError(
                    f"All {len(self._slots)} sequences are busy and {len(self._waiting)} "
                    "requests are queued; retry shortly.",
                )
            self._waiting.append(seq)
            self._cv.notify()

    def cancel(self, seq: Sequence) -> None:
        with self._cv:
            seq.cancelled = True
            self._cv.notify()

    def finish_all(self) -> int:
        """End every running generation now, each with its final chunk; refuse new ones."""
        with self._cv:
            self._stopping = True
            n = sum(1 for s in self._slots if s.seq is not None) + len(self._waiting)
            self._cv.notify()
        return n

    def close(self) -> None:
        self.finish_all()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)

    @property
    def load(self) -> tuple[int, int]:
        """(running, queued)"""
        with self._cv:
            return sum(1 for s in self._slots if s.seq is not None), len(self._waiting)

    # -- the decode thread ------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._waiting and not self._active():
                    self._cv.wait()
                if self._stopping:
                    break
                self._drop_cancelled()
                self._admit()
            if self._active():
                try:
                    self._step()
                except Exception as e:  # a llama.cpp failure must not hang the callers
                    log.exception("decode step failed")
                    for i, slot in enumerate(self._slots):
                        # The cache may hold half a step: forget it rather than trust it.
                        llama_cpp.llama_memory_seq_rm(self.lm.memory, i, -1, -1)
                        slot.tokens.clear()
                        if slot.seq is not None:
                            self._end(slot, EngineError(f"llama.cpp failed: {e}"))
            self._flush()
        for slot in self._slots:
            if slot.seq is not None:
                self._finish(slot, "length", flush=True)
        while self._waiting:
            seq = self._waiting.popleft()
            seq.sampler.close()
            self._post(seq, ServerBusyError("The server is shutting down."))
            self._post(seq, None)
        self._flush()

    def _post(self, seq: Sequence, item: Item) -> None:
        self._outbox.append((seq, item))

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

    def _active(self) -> list[_Slot]:
        return [s for s in self._slots if s.seq is not None]

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.seq is not None and slot.seq.cancelled:
                self._end(slot, None)
        for seq in self._waiting:
            if seq.cancelled:
                seq.sampler.close()
        self._waiting = collections.deque(s for s in self._waiting if not s.cancelled)

    def _admit(self) -> None:
        while self._waiting:
            free = [i for i, s in enumerate(self._slots) if s.seq is None]
            if not free:
                return
            seq = self._waiting.popleft()
            # The free slot whose cache shares the longest prefix with this prompt.
            best, keep = free[0], -1
            for i in free:
                n = _common_prefix(self._slots[i].tokens, seq.prompt)
                if n > keep:
                    best, keep = i, n
            keep = min(keep, len(seq.prompt) - 1)  # the last prompt token must be decoded
            slot = self._slots[best]
            if not llama_cpp.llama_memory_seq_rm(self.lm.memory, best, keep, -1):
                llama_cpp.llama_memory_seq_rm(self.lm.memory, best, -1, -1)
                keep = 0
            del slot.tokens[keep:]
            seq.slot, seq.n_done, seq.reused = best, keep, keep
            slot.seq = seq

    def _step(self) -> None:
        batch = self._batch
        n = 0
        outputs: list[tuple[_Slot, int]] = []

        def add(slot_id: int, token: int, pos: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot_id
            batch.logits[n] = logits
            n += 1

        active = self._active()
        for slot in active:  # one token each for sequences already generating
            seq = slot.seq
            if seq is not None and seq.pending >= 0:
                outputs.append((slot, n))
                add(seq.slot, seq.pending, len(slot.tokens), True)
                slot.tokens.append(seq.pending)
                seq.pending = -1
        for slot in active:  # then prompt reading, in whatever room is left
            seq = slot.seq
            if seq is None or seq.n_done >= len(seq.prompt) or n >= N_BATCH:
                continue
            take = min(len(seq.prompt) - seq.n_done, N_BATCH - n)
            for k in range(take):
                tok = seq.prompt[seq.n_done + k]
                last = seq.n_done + k == len(seq.prompt) - 1
                if last:
                    outputs.append((slot, n))
                add(seq.slot, tok, len(slot.tokens), last)
                slot.tokens.append(tok)
            seq.n_done += take
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.lm.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        for slot, idx in outputs:
            seq = slot.seq
            assert seq is not None
            if seq.cancelled:
                self._end(slot, None)
                continue
            self._accept(slot, seq.sampler.sample(self.lm.ctx, idx))

    def _accept(self, slot: _Slot, token: int) -> None:
        seq = slot.seq
        assert seq is not None
        seq.n_generated += 1
        if not seq.ignore_eos and self.lm.is_eog(token):
            self._finish(slot, "stop", flush=True, token=token)
            return
        delta = seq.text.push(self.lm.piece(token))
        if seq.text.stopped:
            self._finish(slot, "stop", text=delta, token=token)
        elif seq.n_generated >= seq.max_tokens:
            self._finish(slot, "length", text=delta, flush=True, token=token)
        else:
            seq.pending = token
            self._post(seq, Chunk(text=delta, token_ids=(token,)))

    def _finish(
        self,
        slot: _Slot,
        reason: FinishReason,
        *,
        text: str = "",
        flush: bool = False,
        token: int | None = None,
    ) -> None:
        seq = slot.seq
        assert seq is not None
        if flush:
            text += seq.text.flush()
        self._post(
            seq,
            Chunk(
                text=text,
                token_ids=(token,) if token is not None else (),
                finish_reason=reason,
                usage=Usage(
                    prompt_tokens=len(seq.prompt),
                    completion_tokens=seq.n_generated,
                    cached_tokens=seq.reused,
                ),
            ),
        )
        self._end(slot, None)

    def _end(self, slot: _Slot, error: LlmkitError | None) -> None:
        seq = slot.seq
        assert seq is not None
        if error is not None:
            self._post(seq, error)
        self._post(seq, None)
        seq.sampler.close()
        slot.seq = None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _deliver(items: list[tuple[asyncio.Queue[Item], Item]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)
