"""One decode step of the llama.cpp engine over every active sequence, for the
shared ``DecodeLoop``: continuous batching over one shared KV pool (``kv_pool``).

Each step gathers the next token of every generating sequence plus slices of
contexts still being read, decodes them in one ``llama_batch`` and samples each
sequence with its own sampler chain. A sequence enters the pool when it first
reads: it sees the longest prefix of its prompt already cached, from any
sequence, running or finished, and reads only the rest. When another sequence is
reading the same uncached prefix right now, it waits until that is in the pool
and joins it, so sixteen requests with one system prompt read it once.

Memory is taken as sequences grow, not reserved per slot: a cell is taken when a
token is written. A sequence enters the pool only when the cells it may still
take (the rest of its prompt and of its ``max_tokens``), and those the sequences
already in it may still take, are free or held by idle caches (evicted least
recently used first); until then it waits, its place in line kept. Should the
running ones outgrow the pool all the same, the newest is preempted: its cells
go back and it re-enters later with everything it had (its prompt and the
tokens it generated), so the text it has sent stands.

Images ride along (``engines.media``): an image's positions in a prompt are
placeholder ids, cached and shared like tokens; their embeddings, from the
projector (``vision``), go in a second batch of the same step (a llama_batch
holds tokens or embeddings), a sequence's reading stopping at an image's edge
so each step reads either text or one image of it, in order.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from llmkit.engines.decode_loop import Backend, Sequence
from llmkit.engines.llamacpp.context_memory import ContextMemory
from llmkit.engines.llamacpp.draft import (
    DRAFT_MAX,
    SURE,
    Drafter,
    DraftPolicy,
    StepCost,
    SuffixIndex,
)
from llmkit.engines.llamacpp.host_cache import HostCache
from llmkit.engines.llamacpp.image_batch import NO_IMAGES, ImageBatch
from llmkit.engines.llamacpp.kv_pool import KvPool
from llmkit.engines.llamacpp.model import N_BATCH, LoadedModel, batch_put
from llmkit.engines.llamacpp.sampler import Sampler
from llmkit.engines.llamacpp.token_prefix import common_prefix
from llmkit.engines.llamacpp.vision import ImageChunk, Projector
from llmkit.engines.logprobs import score

log = logging.getLogger("llmkit.engine.llamacpp")

#: A shared uncached prefix shorter than this is read by each sequence itself
#: rather than waited for: joining costs a step or more of waiting.
JOIN_MIN = 32
#: Speculation only while at most this many sequences generate and none reads a
#: prompt: a batch already full of other streams gains nothing from drafts (on a
#: CPU each extra row costs about what a stream's token does), so under load the
#: aggregate throughput is what it is without them.
SPEC_STREAMS = 4


@dataclass(eq=False)
class SeqState:
    sampler: Sampler
    lane: int = -1  # its sequence id in the pool; -1: not in the pool (yet, or again)
    feed: list[int] = field(default_factory=list)  # to read: the prompt, or all it had
    n_done: int = 0  # of ``feed``, in the batch being built or in the pool
    ready: int = 0  # of ``feed``, in the pool: decoded
    ctx: list[int] = field(default_factory=list)  # what the lane's cells hold, in order
    order: int = 0  # admission order: the newest waits, or yields, first
    leader: Seq | None = None  # the sequence reading the prefix this one waits for
    join_at: int = 0
    looked: bool = False  # for a leader, once
    entered: bool = False  # the pool has seen it: ``cached`` counts its first entry only
    # The images behind ``feed``'s placeholders (``engines.media``), by image key.
    images: dict[int, ImageChunk] = field(default_factory=dict)
    # Speculative decoding: on for this sequence; its prompt and reply so far
    # (drafting from its own text; None with a draft model).
    spec: bool = False
    index: SuffixIndex | None = None
    policy: DraftPolicy = field(default_factory=DraftPolicy)
    drafts: list[int] | None = None  # drafted this step, being verified
    kinds: list[int] = field(default_factory=list)  # what the index knew of each
    base: int = 0  # the batch row of the token fed before the drafts
    base_pos: int = 0  # and its position
    checked: int = 0  # drafts accepted so far this step


Seq = Sequence[SeqState]


class BatchStep(Backend[SeqState]):
    def __init__(
        self,
        lm: LoadedModel,
        projector: Projector | None = None,
        drafter: Drafter | None = None,
    ) -> None:
        """``drafter``: drafts from a small model (``--draft-model``); without one,
        from each sequence's own text (``draft.SuffixIndex``) where its state has an
        index."""
        self.lm = lm
        self.projector = projector
        # Image embeddings go in a batch of their own: a llama_batch holds tokens or
        # embeddings, not both.
        self._images = ImageBatch(lm, projector) if projector else None
        self.drafter = drafter
        self.spec = {"drafted": 0, "accepted": 0, "verify_steps": 0}
        self.cost = StepCost()  # what a step costs here, which steers how far drafts go
        self.parallel = lm.parallel
        self.share = lm.shares_prefixes
        # What is saved is only ever restored as a shared prefix.
        host = HostCache(lm.host_cache_bytes) if lm.host_cache_bytes and self.share else None
        self.pool = KvPool(lm.kv_cells, lm.lanes, ContextMemory(lm.ctx, lm.memory), host)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._order = itertools.count()
        self._running: set[int] = set()  # lanes of sequences in the pool, as of the last step
        self._counts = self._split_counts()

    def kv_cache(self) -> dict[str, int]:
        return dict(self._counts)

    def admit(self, seq: Seq) -> None:
        seq.state.feed = seq.prompt
        seq.state.order = next(self._order)

    def step(self, active: list[Seq]) -> list[tuple[Seq, int | Exception]]:
        pool, batch = self.pool, self._batch
        n = 0
        outputs: list[tuple[Seq, int]] = []
        written: dict[int, list[int]] = {}
        failed: list[tuple[Seq, int | Exception]] = []

        def add(seq: Seq, token: int, output: bool, sample: bool = True) -> None:
            """``output``: the row's logits are wanted; ``sample``: the step samples
            from them (a draft's are read later, by ``more``)."""
            nonlocal n
            st = seq.state
            if output and sample:
                outputs.append((seq, n))
            batch_put(batch, n, token, len(st.ctx), st.lane, output)
            st.ctx.append(token)
            written.setdefault(st.lane, []).append(token)
            n += 1

        for seq in active:  # settled by the loop already; in case one was not
            self._settle(seq)
        order = sorted(active, key=lambda s: s.state.order)
        gen = [s for s in order if s.state.lane >= 0 and s.pending is not None]
        running = frozenset(s.state.lane for s in order if s.state.lane >= 0)
        if pool.free < len(gen):
            pool.reclaim(len(gen), keep=running)
        for victim in reversed(order):  # the pool is full: the newest make room
            if pool.free >= len(gen):
                break
            if victim.state.lane >= 0 and victim is not order[0]:
                self._preempt(victim)
                if victim in gen:
                    gen.remove(victim)
        if pool.free < len(gen):  # the oldest alone outgrew the pool
            failed = [(s, RuntimeError("the KV cache pool is full")) for s in gen]
            gen = []
        # Drafts only where the batch has room to spare: few streams, no prompt read.
        room = pool.free - len(gen)
        if len(gen) > SPEC_STREAMS or any(s.state.ready < len(s.state.feed) for s in order):
            room = 0
        for seq in gen:  # one token each for sequences already generating
            token, seq.pending = seq.pending, None
            st = seq.state
            st.policy.step()
            drafts = self._drafts(seq, token, min(room, N_BATCH - n - 1), len(gen)) if room else []
            st.base, st.base_pos = n, len(st.ctx)
            add(seq, token, True)
            if drafts:
                room -= len(drafts)
                st.drafts, st.checked = drafts, 0
                for d in drafts:
                    add(seq, d, True, sample=False)

        # Then reading, oldest first, in whatever room the batch and the pool have.
        images = self._images or NO_IMAGES
        images.clear()
        n_img = 0
        running = frozenset(s.state.lane for s in order if s.state.lane >= 0)
        reserved = sum(_owed(s) for s in order if s.state.lane >= 0)
        blocked = False
        for seq in order:
            st = seq.state
            if n + n_img >= N_BATCH:
                break
            if st.lane < 0:
                if blocked or self._waits(seq, order):
                    continue
                # The last token is read: its logits are wanted.
                limit = len(st.feed) - 1 if self.share else 0
                need = _owed(seq) - pool.match(st.feed[:limit]) + reserved
                taken = n + n_img  # cells this step writes already
                short = pool.free - taken < need
                if short and pool.reclaim(need + taken, keep=running) - taken < need:
                    blocked = True  # first come, first served: none after it enters either
                    continue
                st.lane, shared = pool.open(st.feed, limit)
                st.ctx, st.n_done, st.ready = st.feed[:shared], shared, shared
                if not st.entered:
                    st.entered, seq.cached = True, shared
                running = running | {st.lane}
                reserved += _owed(seq)
            room = min(len(st.feed) - st.n_done, N_BATCH - n - n_img, pool.free - n - n_img)
            if room <= 0:
                continue
            if st.feed[st.n_done] < 0:  # an image's placeholders: its embeddings
                take = images.take(seq, room)
                n_img += take
                written.setdefault(st.lane, []).extend(st.feed[st.n_done : st.n_done + take])
                st.ctx.extend(st.feed[st.n_done : st.n_done + take])
                st.n_done += take
                continue
            end = st.n_done + room
            for k in range(st.n_done, end):
                if st.feed[k] < 0:  # text up to the next image; it goes in the next step
                    end = k
                    break
                add(seq, st.feed[k], k == len(st.feed) - 1)
            st.n_done = end

        results: list[tuple[Seq, int | Exception]] = []
        if n:
            batch.n_tokens = n
            start = time.perf_counter()
            rc = llama_cpp.llama_decode(self.lm.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            if n <= 2 * DRAFT_MAX and not n_img:  # steps of the size drafts make
                self.cost.observe(n, time.perf_counter() - start)
            # Sampled now: the image batch's decode overwrites the logits.
            results = [(seq, self._sample(seq, idx)) for seq, idx in outputs]
        if n_img:
            results += images.decode(self._sample)
        if n or n_img:
            for lane, tokens in written.items():
                pool.append(lane, tokens)
            for seq in order:
                seq.state.ready = seq.state.n_done
        self._running = {s.state.lane for s in order if s.state.lane >= 0}
        self._counts = self._split_counts()
        return failed + results

    # -- speculative decoding ------------------------------------------------------

    def _drafts(self, seq: Seq, token: int, room: int, streams: int) -> list[int]:
        """Tokens to verify after ``token`` in this step, at most ``room``; ``streams``
        generating sequences share the step."""
        st = seq.state
        if not st.spec or seq.next_forced is not None:
            return []  # off for it, or the next tokens are the engine's own
        pos = len(st.ctx)  # ``token``'s; a draft's must stay in the context
        k = min(room, DRAFT_MAX, seq.max_tokens - seq.n_generated - 1, self.lm.n_ctx - pos - 1)
        if k <= 0:
            return []
        ratio = self.cost.fixed_per_row()
        if self.drafter is not None:
            k = st.policy.cut([SURE] * k, ratio, streams)
            drafts = self.drafter.draft(st.lane, st.ctx, token, k) if k else []
            kinds = [SURE] * len(drafts)
        elif st.index is not None:
            drafts, kinds = st.index.candidates(k)
            k = st.policy.cut(kinds, ratio, streams)
            drafts, kinds = drafts[:k], kinds[:k]
        else:
            return []
        # An image's placeholders (negative ids, ``engines.media``) are no tokens: a
        # draft that reaches one stops before it.
        cut = next((i for i, t in enumerate(drafts) if t < 0), None)
        if cut is not None:
            drafts = drafts[:cut]
        if drafts:
            drafts = drafts[: st.sampler.allows(drafts)]  # what the grammar refuses: cut
        st.kinds = kinds[: len(drafts)]
        return drafts

    def more(self, seq: Seq) -> int | None:
        st = seq.state
        drafts = st.drafts
        if drafts is None:
            return None
        i = st.checked
        # The token just taken is the draft at this row: the draft's own logits
        # (computed after it) give the next one, as a step of its own would.
        if i < len(drafts) and seq.next_forced is None and seq.pending == drafts[i]:
            st.checked = i + 1
            return self._sample(seq, st.base + i + 1)
        self._settle(seq)
        return None

    def _settle(self, seq: Seq) -> None:
        """The verification of ``seq``'s drafts is over: the cells of those not
        taken go back to the pool now."""
        st = seq.state
        drafts, st.drafts = st.drafts, None
        if drafts is None:
            return
        keep = st.base_pos + 1 + st.checked
        if len(st.ctx) > keep:
            del st.ctx[keep:]
            if st.lane >= 0:
                self.pool.truncate(st.lane, keep)
        st.policy.update(st.kinds, st.checked)
        spec = self.spec
        spec["drafted"] += len(drafts)
        spec["accepted"] += st.checked
        spec["verify_steps"] += 1

    def speculation(self) -> dict[str, int]:
        return dict(self.spec)

    def _split_counts(self) -> dict[str, int]:
        counts = self.pool.split_counts(self._running)
        if self.pool.host is not None:
            counts["host"] = self.pool.host.tokens  # saved cells, restored on a hit
        return counts

    def _waits(self, seq: Seq, order: list[Seq]) -> bool:
        """Should ``seq`` wait for another sequence that is reading its prefix now?"""
        st = seq.state
        if not st.looked and self.share:
            st.looked = True
            cached = self.pool.match(st.feed)
            for other in order:
                o = other.state
                if other is seq or o.lane < 0 or o.ready >= len(o.feed):
                    continue
                c = common_prefix(o.feed, st.feed)
                if c >= cached + JOIN_MIN and c > o.ready:
                    st.leader, st.join_at = other, c
                    break
        leader = st.leader
        if leader is None:
            return False
        lst = leader.state
        if lst.lane >= 0 and lst.ready < st.join_at and any(o is leader for o in order):
            return True
        st.leader = None
        return False

    def _preempt(self, seq: Seq) -> None:
        """Give ``seq``'s cells back; it re-enters with everything it had read and
        generated, the token it was to read next last, so its text goes on."""
        st = seq.state
        log.warning(
            "The KV cache pool (%d tokens) is full: a sequence of %d tokens gives its cells "
            "back and resumes later; a larger --kv-cache-size avoids this.",
            self.pool.cells,
            len(st.ctx),
        )
        pending = [seq.pending] if seq.pending is not None else []
        st.feed = st.ctx + st.feed[st.n_done :] + pending
        seq.pending = None
        self.pool.evict(st.lane)
        st.lane, st.n_done, st.ready, st.ctx, st.looked, st.leader = -1, 0, 0, [], False, None

    def _sample(self, seq: Seq, idx: int) -> int:
        token = self._pick(seq, idx)
        index = seq.state.index
        if index is not None:
            index.extend(token)
        return token

    def _pick(self, seq: Seq, idx: int) -> int:
        sampler = seq.state.sampler
        token = seq.next_forced
        if token is not None:  # written by the engine: nothing is sampled
            sampler.accept(token)
        if seq.logprobs is None:
            return sampler.sample(self.lm.ctx, idx) if token is None else token
        # The raw row, read before the sampler chain sees it (``logprobs``: why raw).
        ptr = llama_cpp.llama_get_logits_ith(self.lm.ctx, idx)
        logits = np.ctypeslib.as_array(ptr, shape=(self.lm.n_vocab,)).copy()
        if token is None:
            token = sampler.sample(self.lm.ctx, idx)
        seq.scored = score(logits, token, seq.logprobs, self.lm.piece)
        return token

    def answer_starts(self, seq: Seq, after_thinking: bool) -> None:
        seq.state.sampler.bind(after_thinking)

    def piece(self, seq: Seq, token: int) -> bytes:
        # An end-of-generation token (where the request ignores them) is no marker.
        return self.lm.piece(token, seq.special and not self.lm.is_eog(token))

    def is_eog(self, token: int) -> bool:
        return self.lm.is_eog(token)

    def release(self, seq: Seq) -> None:
        self._settle(seq)
        seq.state.sampler.close()
        if self.drafter is not None:
            self.drafter.forget(seq.state.lane)
        if seq.state.lane >= 0:
            self.pool.close(seq.state.lane)
            self._running.discard(seq.state.lane)
            self._counts = self._split_counts()
            seq.state.lane = -1

    def recover(self) -> None:
        # The cache may hold half a step: forget it rather than trust it.
        self.pool.reset()

    def close(self) -> None:
        llama_cpp.llama_batch_free(self._batch)
        if self._images is not None:
            self._images.close()
        if self.drafter is not None:
            self.drafter.close()


def _owed(seq: Seq) -> int:
    """Cells ``seq`` may still take: what it has yet to read, and to generate."""
    st = seq.state
    return len(st.feed) - st.n_done + max(0, seq.max_tokens - seq.n_generated)
