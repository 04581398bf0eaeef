"""Drafting with a second, small model of the same tokenizer (``--draft-model``):
its greedy continuation of a sequence is the draft the served model verifies.

The draft model keeps a KV cache of its own with a few slots, one per sequence
it drafts for (at most ``step.SPEC_STREAMS`` draft at once); a slot remembers
the tokens it holds, so each step reads only what the sequence added since
(the tokens taken, one or a few) and then drafts one token per decode. The
draft is its greedy choice, a point mass, so verification keeps the served
model's own distribution (``speculation``) and its seed behaviour.
"""

from __future__ import annotations

import collections
import logging

import llama_cpp
import numpy as np

from llmkit.engines.llamacpp.model import N_BATCH, LoadedModel, LoadOptions, batch_put
from llmkit.engines.llamacpp.token_prefix import common_prefix
from llmkit.errors import EngineError

log = logging.getLogger("llmkit.engine.llamacpp")

#: Sequences drafted for at once (the step drafts only while few generate).
SLOTS = 4


class DraftModel:
    """A small model and its cache, drafting for the served model ``target``."""

    def __init__(self, path: str, target: LoadedModel) -> None:
        self.lm = LoadedModel(
            LoadOptions(
                path=path,
                n_ctx=target.n_ctx,
                n_threads=target.n_threads,
                parallel=SLOTS,
                host_cache_mib=0,
            )
        )
        try:
            _same_tokenizer(self.lm, target, path)
        except BaseException:
            self.lm.close()
            raise
        self.n_vocab = target.n_vocab
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._held: dict[int, list[int]] = {}  # slot -> the tokens its cells hold
        self._slots: collections.OrderedDict[int, int] = collections.OrderedDict()  # lane -> slot

    def _slot(self, lane: int) -> int:
        slot = self._slots.pop(lane, None)
        if slot is None:
            if len(self._slots) < SLOTS:
                used = set(self._slots.values())
                slot = next(i for i in range(SLOTS) if i not in used)
            else:  # the one used longest ago
                _, slot = self._slots.popitem(last=False)
        self._slots[lane] = slot
        return slot

    def draft(self, lane: int, ctx: list[int], token: int, k: int) -> list[int]:
        slot = self._slot(lane)
        held = self._held.setdefault(slot, [])
        full = [*ctx, token]
        # What the slot holds and the sequence shares stays; one token at least is read.
        keep = min(common_prefix(held, full), len(full) - 1)
        llama_cpp.llama_memory_seq_rm(self.lm.memory, slot, keep, -1)
        del held[keep:]
        drafts: list[int] = []
        todo = full[keep:]
        while len(drafts) < k:
            for start in range(0, len(todo), N_BATCH):
                part = todo[start : start + N_BATCH]
                for i, t in enumerate(part):
                    batch_put(self._batch, i, t, len(held) + i, slot, i == len(part) - 1)
                self._batch.n_tokens = len(part)
                if llama_cpp.llama_decode(self.lm.ctx, self._batch) != 0:
                    llama_cpp.llama_memory_seq_rm(self.lm.memory, slot, -1, -1)
                    held.clear()
                    return drafts
                held.extend(part)
            ptr = llama_cpp.llama_get_logits_ith(self.lm.ctx, -1)
            row = np.ctypeslib.as_array(ptr, shape=(self.lm.n_vocab,))
            nxt = int(row.argmax())
            if self.lm.is_eog(nxt) or nxt >= self.n_vocab:
                break
            drafts.append(nxt)
            todo = [nxt]
        return drafts

    def forget(self, lane: int) -> None:
        slot = self._slots.pop(lane, None)
        if slot is not None:
            llama_cpp.llama_memory_seq_rm(self.lm.memory, slot, -1, -1)
            self._held.pop(slot, None)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self._batch)
        self.lm.close()


def _same_tokenizer(draft: LoadedModel, target: LoadedModel, path: str) -> None:
    """Drafts are token ids: the two vocabularies must be the same ids for the same
    text (a family's sizes may differ by a few padding tokens past the real ones)."""
    n = min(draft.n_vocab, target.n_vocab)
    probe = list(range(0, n, max(1, n // 512)))
    if abs(draft.n_vocab - target.n_vocab) > 128 or any(
        draft.piece(t, True) != target.piece(t, True) for t in probe
    ):
        raise EngineError(
            f"The draft model {path} has another tokenizer than the served model "
            f"({draft.n_vocab} against {target.n_vocab} tokens, or other pieces); give a "
            "draft model of the same family."
        )
    if draft.n_ctx_train and draft.n_ctx_train < target.n_ctx:
        log.info("The draft model was trained on %d tokens only", draft.n_ctx_train)
