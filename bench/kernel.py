"""llmkit's attention kernel against ggml's stock CPU kernels, in the same build and
the same run: every kernel figure the docs quote, as times and ratios.

    .venv/bin/python bench/kernel.py [--quick] [--repeat 7] [--threads N]

The patch keeps the stock kernels behind a switch (``build_info.stock_attention``),
so each figure times the same llama.cpp context, with the same cells in it, on
one kernel and then the other, alternating, and reports medians. The bundled
SmolLM2-135M, f16 cells, flash attention, one unified pool as llmkit loads it:

- decode steps of 16 sequences of 1,500 tokens in a full 65,536-cell pool, each
  sequence's cells together (as prompts read one at a time leave them) and
  spread (read together in 32-token slices, as tokens decoded together lie);
- the same 16 sequences on stock kernels over per-sequence caches, as
  llama-server keeps them (``--parallel 16 -c 32768``: no unified pool);
- decode steps of 16 sequences of 64 tokens in the same full pool;
- one stream: reading a prompt of 850 and 2,000 tokens, then decoding;
- one sequence of 850 tokens decoding alone in a 16,384-cell pool and beside
  other sequences' cells filling it.

Prints a Markdown table; raw results go to bench/results/kernel.json. ``--quick``
shrinks every size (pools of 8,192 / 4,096 cells, 4 sequences) to show it runs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import _logger

from llmkit.engines.llamacpp.build_info import packed_attention, stock_attention
from llmkit.engines.llamacpp.model import (
    KV_F16,
    LANES_MAX,
    N_BATCH,
    batch_put,
    default_threads,
)
from llmkit.models.bundled import bundled_model_path

ROOT = Path(__file__).resolve().parent
FULL = dict(pool=65_536, seqs=16, long=1_500, short=64, lone_pool=16_384, prompts=(850, 2_000))
QUICK = dict(pool=8_192, seqs=4, long=1_500, short=64, lone_pool=4_096, prompts=(850, 2_000))


class Pool:
    """One llama.cpp context on the model, driven by hand: which lanes (sequence
    ids) hold how many tokens."""

    def __init__(
        self, model: llama_cpp.llama_model_p, cells: int, threads: int, *, unified: bool = True,
        lanes: int = LANES_MAX,
    ) -> None:  # fmt: skip
        p = llama_cpp.llama_context_default_params()
        p.n_ctx, p.n_seq_max, p.kv_unified = cells, lanes, unified
        p.type_k = p.type_v = KV_F16
        p.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        p.n_batch = p.n_ubatch = N_BATCH
        p.n_threads = p.n_threads_batch = threads
        p.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model, p)
        if not self.ctx:
            raise SystemExit(f"llama.cpp could not make a context of {cells} cells")
        self.cells = llama_cpp.llama_n_ctx(self.ctx)
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.pos: dict[int, int] = {}
        self.rng = np.random.default_rng(0)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)

    def free(self) -> int:
        return self.cells - sum(self.pos.values())

    def decode(self, rows: list[tuple[int, int]], last_only: bool = False) -> float:
        """Rows of (lane, token) at each lane's next position, N_BATCH at a time; the
        seconds it took. Every row wants logits, as a decode step's do."""
        t0 = time.perf_counter()
        for at in range(0, len(rows), N_BATCH):
            part = rows[at : at + N_BATCH]
            for i, (lane, token) in enumerate(part):
                pos = self.pos.get(lane, 0)
                batch_put(self.batch, i, token, pos, lane, not last_only or at + i == len(rows) - 1)
                self.pos[lane] = pos + 1
            self.batch.n_tokens = len(part)
            if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
                raise SystemExit("llama_decode failed (the pool is full?)")
        return time.perf_counter() - t0

    def tokens(self, n: int) -> list[int]:
        return self.rng.integers(100, 40_000, size=n).tolist()

    def read(self, prompts: dict[int, int], chunk: int = N_BATCH) -> float:
        """Read a random prompt of ``n`` tokens into each lane, ``chunk`` tokens of
        each in turn; the seconds."""
        toks = {lane: self.tokens(n) for lane, n in prompts.items()}
        rows = []
        for at in range(0, max(prompts.values()), chunk):
            rows += [(lane, t) for lane, ts in toks.items() for t in ts[at : at + chunk]]
        return self.decode(rows, last_only=True)

    def step(self, lanes: list[int]) -> float:
        """One decode step, a token for each lane, then taken back: the same cells
        for the next kernel."""
        took = self.decode(
            [(lane, t) for lane, t in zip(lanes, self.tokens(len(lanes)), strict=True)]
        )
        for lane in lanes:
            self.pos[lane] -= 1
            llama_cpp.llama_memory_seq_rm(self.mem, lane, self.pos[lane], -1)
        return took

    def copy(self, src: int, dst: int) -> None:
        """``dst`` gets cells of its own holding what ``src``'s hold (a state copy)."""
        size = llama_cpp.llama_state_seq_get_size(self.ctx, src)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(self.ctx, buf, size, src)
        if llama_cpp.llama_state_seq_set_data(self.ctx, buf, n, dst) == 0:
            raise SystemExit("could not copy a sequence's cells")
        self.pos[dst] = self.pos[src]

    def fill(self, src: int, keep: int) -> None:
        """Fill the pool with copies of ``src`` in new lanes, then a last prompt,
        until ``keep`` cells are free."""
        lane = max(self.pos) + 1
        while self.free() - keep > self.pos[src]:
            self.copy(src, lane)
            lane += 1
        if self.free() > keep:
            self.read({lane: self.free() - keep})


def both(measure: Callable[[], float], repeat: int) -> dict:
    """``measure`` (seconds) on each kernel in turn, ``repeat`` times after a warm-up
    of each: medians in ms and packed / stock."""
    packed, stock = [], []
    for i in range(repeat + 1):
        a = measure()
        with stock_attention():
            b = measure()
        if i:
            packed.append(a * 1000)
            stock.append(b * 1000)
    p, s = statistics.median(packed), statistics.median(stock)
    return {"packed_ms": p, "stock_ms": s, "ratio": p / s, "packed_all": packed, "stock_all": stock}


def decode_steps(model, size: dict, threads: int, repeat: int) -> list[tuple[str, dict]]:
    n, long, short = size["seqs"], size["long"], size["short"]
    lanes = list(range(n))
    pool = Pool(model, size["pool"], threads)
    pool.read({0: long})
    for lane in lanes[1:]:
        pool.copy(0, lane)  # each sequence's cells together
    pool.read({lane: short for lane in range(n, 2 * n)})
    pool.fill(0, keep=2 * n)
    rows = [
        (f"decode step, {n} x {long:,} tokens, full {pool.cells:,}-cell pool",
         both(lambda: pool.step(lanes), repeat)),
        (f"decode step, {n} x {short} tokens, same full pool",
         both(lambda: pool.step(list(range(n, 2 * n))), repeat)),
    ]  # fmt: skip
    pool.close()

    pool = Pool(model, size["pool"], threads)
    pool.read({lane: long for lane in lanes}, chunk=32)  # cells spread, as decoded together
    pool.fill(0, keep=2 * n)
    rows.append(
        (
            f"the same {n} x {long:,}, cells spread in 32-token slices",
            both(lambda: pool.step(lanes), repeat),
        )
    )
    pool.close()

    per_seq = min(2_048, 2 ** int(np.ceil(np.log2(long + 64))))
    pool = Pool(model, n * per_seq, threads, unified=False, lanes=n)
    pool.read({0: long})
    for lane in lanes[1:]:
        pool.copy(0, lane)
    r = both(lambda: pool.step(lanes), repeat)
    rows.append((f"the same {n} x {long:,}, per-sequence caches of {per_seq:,} (llama-server)", r))
    pool.close()
    return rows


def one_stream(model, n: int, threads: int, repeat: int) -> list[tuple[str, dict]]:
    """One sequence in a 4,096-cell pool: reading an ``n``-token prompt, then a
    decode step after it."""
    pool = Pool(model, 4_096, threads)

    def read_prompt() -> float:
        took = pool.read({0: n})
        llama_cpp.llama_memory_seq_rm(pool.mem, 0, -1, -1)
        pool.pos = {}
        return took

    rows = [(f"one stream, reading a {n:,}-token prompt", both(read_prompt, max(1, repeat // 3)))]
    pool.read({0: n})
    rows.append(
        (f"one stream, a decode step at {n:,} tokens", both(lambda: pool.step([0]), repeat))
    )
    pool.close()
    return rows


def beside_others(model, size: dict, threads: int, repeat: int) -> list[tuple[str, dict]]:
    """One sequence decoding alone in a pool, then with other sequences' cells
    filling the pool around it."""
    n = size["prompts"][0]
    pool = Pool(model, size["lone_pool"], threads)
    pool.read({0: n})
    alone = both(lambda: pool.step([0]), repeat)
    pool.fill(0, keep=1)
    full = both(lambda: pool.step([0]), repeat)
    pool.close()
    return [
        (f"one {n:,}-token sequence alone in a {pool.cells:,}-cell pool", alone),
        ("the same, others' cells filling the pool", full),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small pools, to show it runs")
    ap.add_argument("--repeat", type=int, default=None, help="timings per kernel (7; quick 3)")
    ap.add_argument("--threads", type=int, default=default_threads())
    args = ap.parse_args()
    if not packed_attention():
        raise SystemExit("this llama.cpp has no llmkit attention kernel: run scripts/bootstrap.sh")
    size = QUICK if args.quick else FULL
    repeat = args.repeat or (3 if args.quick else 7)
    _logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(bundled_model_path().encode(), params)

    t0 = time.time()
    rows = decode_steps(model, size, args.threads, repeat)
    for n in size["prompts"]:
        rows += one_stream(model, n, args.threads, repeat)
    rows += beside_others(model, size, args.threads, repeat)
    llama_cpp.llama_model_free(model)

    run = "quick" if args.quick else "full"
    print(f"\n{run} run, {args.threads} threads, median of {repeat}, {time.time() - t0:.0f} s\n")
    print("| figure | packed ms | stock ms | packed / stock |")
    print("|---|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['packed_ms']:.1f} | {r['stock_ms']:.1f} | {r['ratio']:.2f} |")
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "kernel.json").write_text(json.dumps({
        "quick": args.quick, "threads": args.threads, "repeat": repeat, "size": size,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "rows": [{"figure": name, **r} for name, r in rows],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
