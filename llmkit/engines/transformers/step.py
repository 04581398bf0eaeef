"""The transformers engine's decode loop: one thread drives the model, so the event
loop never waits on torch, and up to ``parallel`` sequences take turns on it.

Each turn runs one forward pass for one sequence (a chunk of its prompt, or its
last token) with that sequence's own KV cache, then samples. Streams therefore
advance together and a long reply never holds up a new request; what this does
not do is run several sequences in one matmul: batching sequences of different
lengths needs a padded or paged KV cache, which is transformers' continuous
batching API (still changing from release to release) or vLLM's job.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from llmkit.core.types import Chunk, FinishReason, SamplingParams, Usage
from llmkit.engines.textstream import TextStream
from llmkit.engines.transformers import sampler
from llmkit.engines.transformers.model import LoadedHF
from llmkit.errors import EngineError, LlmkitError, ServerBusyError

log = logging.getLogger("llmkit.engine.transformers")
PREFILL_CHUNK = 256  # prompt tokens per turn: a long prompt does not stall the others
Item = Chunk | LlmkitError | None


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    sampling: SamplingParams
    max_tokens: int
    text: TextStream
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Item]
    ignore_eos: bool = False
    # decode state, touched by the decode thread only
    cache: Any = None
    fed: int = 0  # prompt tokens in the cache
    pending: int | None = None  # the sampled token not yet in the cache
    generated: list[int] = field(default_factory=list)
    window: list[int] = field(default_factory=list)  # tokens the text deltas come from
    offsets: list[int] = field(default_factory=lambda: [0, 0])
    gen: Any = None
    cancelled: bool = False
    finish_now: bool = False


class Scheduler:
    def __init__(self, lm: LoadedHF, *, parallel: int, max_queue: int) -> None:
        self.lm = lm
        self.parallel = parallel
        self.max_queue = max_queue
        self._cond = threading.Condition()
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._active: list[Sequence] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="transformers-decode", daemon=True)
        self._thread.start()

    @property
    def load(self) -> tuple[int, int]:
        with self._cond:
            return len(self._active), len(self._waiting)

    def submit(self, seq: Sequence) -> None:
        with self._cond:
            if len(self._active) >= self.parallel and len(self._waiting) >= self.max_queue:
                raise ServerBusyError(
                    f"The server is busy: {len(self._active)} generations running and "
                    f"{len(self._waiting)} waiting. Retry shortly."
                )
            seq.gen = sampler.generator(seq.sampling, self.lm.device)
            # The prompt's last tokens decode along with the reply (word-initial spaces).
            seq.window = list(seq.prompt[-4:])
            seq.offsets = [0, len(seq.window)]
            self._waiting.append(seq)
            self._cond.notify()

    def cancel(self, seq: Sequence) -> None:
        seq.cancelled = True

    def finish_all(self) -> int:
        with self._cond:
            seqs = [*self._active, *self._waiting]
            for s in seqs:
                s.finish_now = True
            self._cond.notify()
        return len(seqs)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=60)

    # -- the decode thread ---------------------------------------------------------

    def _run(self) -> None:
        torch = self.lm.torch
        while True:
            with self._cond:
                while not self._stop and not self._active and not self._waiting:
                    self._cond.wait()
                if self._stop:
                    for seq in [*self._active, *self._waiting]:
                        self._post(seq, EngineError("The server stopped."))
                        self._post(seq, None)
                    return
                while self._waiting and len(self._active) < self.parallel:
                    self._active.append(self._waiting.popleft())
                turn = list(self._active)
            for seq in turn:
                if seq.cancelled:
                    self._end(seq)
                elif seq.finish_now:
                    self._finish(seq, "length", flush=True)
                else:
                    try:
                        with torch.inference_mode():
                            self._step(seq)
                    except Exception as e:  # a failure of one sequence ends only that one
                        log.exception("decode step failed")
                        self._post(seq, EngineError(f"The model failed: {e}"))
                        self._end(seq)

    def _step(self, seq: Sequence) -> None:
        torch = self.lm.torch
        if seq.fed < len(seq.prompt):
            feed = seq.prompt[seq.fed : seq.fed + PREFILL_CHUNK]
        else:
            assert seq.pending is not None
            feed = [seq.pending]
        ids = torch.tensor([feed], device=self.lm.device)
        out = self.lm.model(input_ids=ids, use_cache=True, **{self.lm.cache_kw: seq.cache})
        seq.cache = out.get("cache") if "cache" in out else out.past_key_values
        seq.fed = min(seq.fed + len(feed), len(seq.prompt))
        if seq.pending is None and seq.fed < len(seq.prompt):
            return  # more prompt to read first
        logits = out.logits[0, -1].float()
        self._accept(seq, sampler.sample(logits, seq.sampling, seq.generated, seq.gen))

    def _accept(self, seq: Sequence, token: int) -> None:
        seq.generated.append(token)
        if not seq.ignore_eos and token in self.lm.eos_ids:
            self._finish(seq, "stop", flush=True, token=token)
            return
        seq.window.append(token)
        delta = seq.text.push(self.lm.delta(seq.window, seq.offsets).encode("utf-8"))
        if seq.text.stopped:
            self._finish(seq, "stop", text=delta, token=token)
        elif len(seq.generated) >= seq.max_tokens:
            self._finish(seq, "length", text=delta, flush=True, token=token)
        else:
            seq.pending = token
            self._post(seq, Chunk(text=delta, token_ids=(token,)))

    def _finish(
        self,
        seq: Sequence,
        reason: FinishReason,
        *,
        text: str = "",
        flush: bool = False,
        token: int | None = None,
    ) -> None:
        if flush:
            text += seq.text.flush()
        usage = Usage(prompt_tokens=len(seq.prompt), completion_tokens=len(seq.generated))
        chunk = Chunk(
            text=text,
            token_ids=(token,) if token is not None else (),
            finish_reason=reason,
            usage=usage,
        )
        self._post(seq, chunk)
        self._end(seq)

    def _end(self, seq: Sequence) -> None:
        self._post(seq, None)
        seq.cache = None  # the KV cache goes now, not when the request object does
        with self._cond:
            if seq in self._active:
                self._active.remove(seq)
            elif seq in self._waiting:
                self._waiting.remove(seq)

    @staticmethod
    def _post(seq: Sequence, item: Item) -> None:
        try:
            seq.loop.call_soon_threadsafe(seq.queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (shutdown)
            pass
