"""One decode step of the llama.cpp engine over every active sequence, for the
shared ``DecodeLoop``: continuous batching with prefix reuse.

Each step gathers the next token of every generating sequence plus a slice of
any prompt still being read, decodes them in one ``llama_batch``, and samples
each sequence with its own sampler chain. A slot keeps the tokens its KV cache
holds after its sequence leaves, so a request that starts with the same tokens
(the next turn of a chat) takes that slot and reuses the prefix instead of
reading it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from llmkit.engines.decode_loop import Backend, Sequence
from llmkit.engines.llamacpp.model import N_BATCH, LoadedModel, batch_put
from llmkit.engines.llamacpp.sampler import Sampler
from llmkit.engines.logprobs import score


@dataclass(eq=False)
class SeqState:
    sampler: Sampler
    slot: int = -1
    n_done: int = 0  # prompt tokens already in the KV cache


Seq = Sequence[SeqState]


@dataclass
class _Slot:
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds, in order
    seq: Seq | None = None


class BatchStep(Backend[SeqState]):
    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self.parallel = lm.parallel
        self._slots = [_Slot() for _ in range(lm.parallel)]
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)

    def kv_cache(self) -> dict[str, int]:
        # Each slot's cells: its sequence's while one runs, kept for reuse after.
        used = sum(len(s.tokens) for s in self._slots if s.seq is not None)
        cached = sum(len(s.tokens) for s in self._slots if s.seq is None)
        total = self.lm.n_ctx * self.parallel
        return {"used": used, "cached": cached, "free": total - used - cached}

    def admit(self, seq: Seq) -> None:
        free = [i for i, s in enumerate(self._slots) if s.seq is None]
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
        seq.state.slot, seq.state.n_done, seq.cached = best, keep, keep
        slot.seq = seq

    def step(self, active: list[Seq]) -> list[tuple[Seq, int | Exception]]:
        batch = self._batch
        n = 0
        outputs: list[tuple[Seq, int]] = []

        def add(slot_id: int, token: int, pos: int, logits: bool) -> None:
            nonlocal n
            batch_put(batch, n, token, pos, slot_id, logits)
            n += 1

        for seq in active:  # one token each for sequences already generating
            if seq.pending is not None:
                slot = self._slots[seq.state.slot]
                outputs.append((seq, n))
                add(seq.state.slot, seq.pending, len(slot.tokens), True)
                slot.tokens.append(seq.pending)
                seq.pending = None
        for seq in active:  # then prompt reading, in whatever room is left
            st = seq.state
            if st.n_done >= len(seq.prompt) or n >= N_BATCH:
                continue
            slot = self._slots[st.slot]
            take = min(len(seq.prompt) - st.n_done, N_BATCH - n)
            for k in range(take):
                tok = seq.prompt[st.n_done + k]
                last = st.n_done + k == len(seq.prompt) - 1
                if last:
                    outputs.append((seq, n))
                add(st.slot, tok, len(slot.tokens), last)
                slot.tokens.append(tok)
            st.n_done += take
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.lm.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return [(seq, self._sample(seq, idx)) for seq, idx in outputs]

    def _sample(self, seq: Seq, idx: int) -> int:
        if seq.logprobs is None:
            return seq.state.sampler.sample(self.lm.ctx, idx)
        # The raw row, read before the sampler chain sees it (``logprobs``: why raw).
        ptr = llama_cpp.llama_get_logits_ith(self.lm.ctx, idx)
        logits = np.ctypeslib.as_array(ptr, shape=(self.lm.n_vocab,)).copy()
        token = seq.state.sampler.sample(self.lm.ctx, idx)
        seq.scored = score(logits, token, seq.logprobs, self.lm.piece)
        return token

    def piece(self, seq: Seq, token: int) -> bytes:
        return self.lm.piece(token)

    def is_eog(self, token: int) -> bool:
        return self.lm.is_eog(token)

    def release(self, seq: Seq) -> None:
        seq.state.sampler.close()
        if seq.state.slot >= 0 and self._slots[seq.state.slot].seq is seq:
            self._slots[seq.state.slot].seq = None

    def recover(self) -> None:
        for i, slot in enumerate(self._slots):
            # The cache may hold half a step: forget it rather than trust it.
            llama_cpp.llama_memory_seq_rm(self.lm.memory, i, -1, -1)
            slot.tokens.clear()

    def close(self) -> None:
        llama_cpp.llama_batch_free(self._batch)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
