"""The KV pool's prefix tree against a model of llama.cpp's unified KV cache
(cells with a position and a set of sequence ids): what the tree says each lane
sees, and how many cells are used, must be what the cells hold."""

from __future__ import annotations

import json
import random

import pytest

from llmkit.engines.llamacpp.host_cache import HostCache
from llmkit.engines.llamacpp.kv_pool import KvPool
from llmkit.engines.llamacpp.token_prefix import common_prefix


class Cells:
    """llama.cpp's unified cache, as its memory calls change it."""

    def __init__(self) -> None:
        self.cells: list[tuple[int, int, set[int]]] = []  # (token, position, lanes)

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        for _, pos, lanes in self.cells:
            if src in lanes and p0 <= pos < p1:
                lanes.add(dst)

    def seq_rm(self, lane: int, p0: int, p1: int) -> bool:
        p1 = p1 if p1 >= 0 else 1 << 30
        for _, pos, lanes in self.cells:
            if max(p0, 0) <= pos < p1:
                lanes.discard(lane)
        self.cells = [c for c in self.cells if c[2]]
        return True

    def clear(self) -> None:
        self.cells = []

    def save(self, lane: int) -> bytearray:
        mine = sorted((pos, t) for t, pos, lanes in self.cells if lane in lanes)
        return bytearray(json.dumps(mine).encode())

    def load(self, lane: int, blob: bytearray) -> bool:
        self.seq_rm(lane, -1, -1)
        self.cells += [(t, pos, {lane}) for pos, t in json.loads(blob)]
        self.loads += 1
        return True

    loads = 0

    def decode(self, lane: int, tokens: list[int]) -> None:
        start = len(self.seen_by(lane))
        self.cells += [(t, start + i, {lane}) for i, t in enumerate(tokens)]

    def seen_by(self, lane: int) -> list[int]:
        return [t for t, _, lanes in sorted(self.cells, key=lambda c: c[1]) if lane in lanes]


def test_a_prefix_is_shared_not_copied():
    cells = Cells()
    pool = KvPool(100, 8, cells)
    a, shared = pool.open([1, 2, 3, 4, 5], limit=4)
    assert shared == 0
    cells.decode(a, [1, 2, 3, 4, 5])
    pool.append(a, [1, 2, 3, 4, 5])
    b, shared = pool.open([1, 2, 3, 9], limit=3)
    assert shared == 3 and cells.seen_by(b) == [1, 2, 3]
    cells.decode(b, [9])
    pool.append(b, [9])
    assert pool.used == len(cells.cells) == 6  # 1 2 3 once, 4 5 for a, 9 for b
    pool.close(a)
    assert pool.split_counts({b}) == {"used": 4, "cached": 2, "free": 94}


def test_drafted_cells_not_accepted_go_back_at_once_and_the_tree_stays_true():
    cells = Cells()
    pool = KvPool(100, 8, cells)
    a, _ = pool.open([1, 2, 3], limit=2)
    cells.decode(a, [1, 2, 3])
    pool.append(a, [1, 2, 3])
    b, shared = pool.open([1, 2, 3, 4], limit=3)  # shares a's three cells
    assert shared == 3
    # b's next token (5) and three drafts (6 7 8); two drafts are accepted.
    cells.decode(b, [5, 6, 7, 8])
    pool.append(b, [5, 6, 7, 8])
    pool.truncate(b, 6)
    assert cells.seen_by(b) == [1, 2, 3, 5, 6, 7] and cells.seen_by(a) == [1, 2, 3]
    assert pool.used == len(cells.cells) == 6
    assert pool.match([1, 2, 3, 5, 6, 7, 8]) == 6
    # None accepted: the node of b's own is gone; its next cells start from the shared ones.
    pool.truncate(b, 3)
    assert pool.used == len(cells.cells) == 3 and cells.seen_by(b) == [1, 2, 3]
    cells.decode(b, [9])
    pool.append(b, [9])
    assert pool.match([1, 2, 3, 9]) == 4 and pool.used == 4


def test_eviction_frees_what_no_other_lane_sees_least_recently_used_first():
    cells = Cells()
    pool = KvPool(12, 8, cells)
    lanes = []
    for first in (1, 2, 3):
        lane, _ = pool.open([first] * 4, limit=3)
        cells.decode(lane, [first] * 4)
        pool.append(lane, [first] * 4)
        pool.close(lane)
        lanes.append(lane)
    assert pool.free == 0
    assert pool.reclaim(4) == 4
    assert cells.seen_by(lanes[0]) == [] and cells.seen_by(lanes[1]) == [2] * 4
    assert pool.match([1, 1, 1]) == 0 and pool.match([3, 3, 3]) == 3


def test_an_evicted_sequence_comes_back_from_host_memory_sharing_what_the_pool_holds():
    cells = Cells()
    pool = KvPool(200, 8, cells, HostCache(1 << 20))
    system = [9] * 40
    a, _ = pool.open(system + [1] * 50, limit=89)
    cells.decode(a, system + [1] * 50)
    pool.append(a, system + [1] * 50)
    b, shared = pool.open(system + [2] * 50, limit=89)  # a is still running
    assert shared == 40
    cells.decode(b, [2] * 50)
    pool.append(b, [2] * 50)
    pool.close(a)
    assert pool.reclaim(100, keep=frozenset({b})) == 110  # a's 50 cells go to host memory
    assert pool.host is not None and len(pool.host) == 1 and pool.host.tokens == 90
    # a's next turn: its history comes back, the system prompt shared with b's cells
    c, shared = pool.open(system + [1] * 50 + [3] * 5, limit=94)
    assert shared == 90 and cells.loads == 1 and pool.restored == 50
    assert cells.seen_by(c) == system + [1] * 50
    assert pool.used == len(cells.cells) == 40 + 50 + 50  # the system prompt once
    assert len(pool.host) == 0  # back in the pool whole: saved again when evicted again


def saved(tokens: list[int]) -> tuple[Cells, KvPool]:
    """A pool of 100 cells whose only cache, ``tokens``, went to host memory."""
    cells = Cells()
    pool = KvPool(100, 8, cells, HostCache(1 << 20))
    a, _ = pool.open(tokens, limit=len(tokens) - 1)
    cells.decode(a, tokens)
    pool.append(a, tokens)
    pool.close(a)
    pool.reclaim(100)
    return cells, pool


def test_a_restore_stops_where_the_prompt_parts_from_the_saved_sequence():
    cells, pool = saved(list(range(60)))
    b, shared = pool.open([*range(45), 7, 7], limit=46)
    assert shared == 45 and cells.seen_by(b) == list(range(45))
    assert pool.used == len(cells.cells) == 45
    assert len(pool.host) == 1  # the rest of it may still serve another prompt
    # a short gain is read, not restored
    pool.close(b)
    pool.reclaim(100)
    assert pool.open([0, 1, 2, 3], limit=3)[1] == 0


def test_without_room_for_the_whole_saved_sequence_the_prompt_is_read():
    cells, pool = saved(list(range(80)))
    b, _ = pool.open([7] * 40, limit=39)
    cells.decode(b, [7] * 40)
    pool.append(b, [7] * 40)  # 60 cells free, 80 needed for a moment
    c, shared = pool.open(list(range(80)), limit=79)
    assert shared == 0 and cells.loads == 0 and cells.seen_by(c) == []
    assert pool.used == len(cells.cells) == 40 and len(pool.host) == 1


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("host", [False, True])
def test_the_tree_is_what_the_cells_hold(seed, host):
    """Random opens, growth, closes and evictions over prompts that share prefixes,
    with and without a host cache that evicted sequences come back from."""
    random_run(seed, host)


def test_the_random_runs_bring_sequences_back_from_host_memory():
    assert sum(random_run(seed, True).loads for seed in range(20)) >= 20


def random_run(seed: int, host: bool) -> Cells:
    rng = random.Random(seed)
    cells = Cells()
    pool = KvPool(400, 6, cells, HostCache(4000) if host else None)
    running: dict[int, list[int]] = {}  # lane -> what it should see
    for _ in range(200):
        op = rng.random()
        if op < 0.3 and len(running) < 4:
            prompt = [rng.choice([7, 8]) for _ in range(rng.randint(1, 6))] * rng.randint(1, 3)
            if host:  # long enough to be saved, and to come back
                prompt = prompt * 12
            lane, shared = pool.open(prompt, limit=len(prompt) - 1)
            assert cells.seen_by(lane) == prompt[:shared]
            assert shared == min(pool.match(prompt), len(prompt) - 1)
            cells.decode(lane, prompt[shared:])
            pool.append(lane, prompt[shared:])
            running[lane] = prompt
        elif op < 0.7 and running:
            lane = rng.choice(list(running))
            grow = [rng.randint(0, 3) for _ in range(rng.randint(1, 4))]
            if pool.free < len(grow):
                pool.reclaim(len(grow), keep=frozenset(running))
            if pool.free >= len(grow):
                cells.decode(lane, grow)
                pool.append(lane, grow)
                running[lane] += grow
        elif op < 0.9 and running:
            lane = rng.choice(list(running))
            pool.close(lane)
            del running[lane]
        else:
            pool.reclaim(pool.cells, keep=frozenset(running))
        assert pool.used == len(cells.cells)
        for lane, want in running.items():
            assert cells.seen_by(lane) == want
        counts = pool.split_counts(set(running))
        assert counts["used"] + counts["cached"] + counts["free"] == pool.cells
    return cells


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2, 3], [0, 1, 2, 3, 9], offset=1) == 3
    assert common_prefix([5], [1, 2]) == 0
    assert common_prefix(list(range(1000)), [*range(999), 0]) == 999


def test_the_host_tier_takes_at_most_a_quarter_of_available_ram_unless_told():
    from llmkit.engines.llamacpp.spec import LlamaCppOptions, _host_cache_mib
    from llmkit.models.fit import available_ram

    default = _host_cache_mib(LlamaCppOptions())
    assert 0 < default <= min(8192, (available_ram() >> 20) // 4 + 256)  # RAM moves a little
    assert _host_cache_mib(LlamaCppOptions(kv_host_cache=20000)) == 20000
    assert _host_cache_mib(LlamaCppOptions(kv_host_cache=0)) == 0
