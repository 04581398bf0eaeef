"""llmkit's Q4_1 column kernel against ggml's stock matrix product, in the same build
and the same run: the time of a decode step of one sequence with 1 to 33 rows (a
token and the drafts a speculative step verifies), as times and ratios.

    .venv/bin/python bench/columns.py [--repeat 15] [--threads N] [--context 500]

The patch keeps ggml's loop behind a switch (``build_info.stock_matmul``), so each
figure times the same context with the same cells, on one path and then the other,
alternating, and reports medians. The bundled SmolLM2-135M (Q4_1) after a prompt of
``--context`` tokens. It also fits each path's step time to a fixed part and a part
per row (least squares over the sizes), the two figures that decide how far a draft
pays. Prints a Markdown table; raw results go to bench/results/columns.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import llama_cpp
import numpy as np
from kernel import Pool  # bench/kernel.py: a context driven by hand
from llama_cpp import _logger

from llmkit.engines.llamacpp.build_info import column_matmul_on, stock_matmul
from llmkit.engines.llamacpp.model import default_threads
from llmkit.models.bundled import bundled_model_path

ROOT = Path(__file__).resolve().parent
ROWS = [1, 2, 3, 4, 5, 8, 12, 16, 24, 33]


def step(pool: Pool, n: int) -> float:
    """``n`` rows of one sequence decoded in one step, then taken back."""
    at = pool.pos[0]
    took = pool.decode([(0, t) for t in pool.tokens(n)])
    llama_cpp.llama_memory_seq_rm(pool.mem, 0, at, -1)
    pool.pos[0] = at
    return took


def fit(rows: list[int], ms: list[float]) -> tuple[float, float]:
    """(fixed, per row) in ms: the least-squares line through the step times."""
    per_row, fixed = np.polyfit(rows, ms, 1)
    return float(fixed), float(per_row)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15, help="timings per path and size")
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--context", type=int, default=500, help="prompt tokens before the steps")
    args = ap.parse_args()
    if not column_matmul_on():
        raise SystemExit("this llama.cpp has no llmkit column kernel: run scripts/bootstrap.sh")
    _logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(bundled_model_path().encode(), params)
    pool = Pool(model, 4_096, args.threads)
    pool.read({0: args.context})

    t0 = time.time()
    results = []
    for n in ROWS:
        ours, stock = [], []
        for i in range(args.repeat + 1):  # the first of each is a warm-up
            a = step(pool, n)
            with stock_matmul():
                b = step(pool, n)
            if i:
                ours.append(a * 1000)
                stock.append(b * 1000)
        o, s = statistics.median(ours), statistics.median(stock)
        results.append({"rows": n, "columns_ms": o, "stock_ms": s, "ratio": o / s})
    pool.close()
    llama_cpp.llama_model_free(model)

    print(f"\n{args.threads} threads, {args.context}-token context, median of {args.repeat}, "
          f"{time.time() - t0:.0f} s\n")  # fmt: skip
    print("| rows in the step | columns ms | stock ms | columns / stock |")
    print("|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['rows']} | {r['columns_ms']:.1f} | {r['stock_ms']:.1f} | {r['ratio']:.2f} |")
    ns = [r["rows"] for r in results]
    lines = {}
    for key in ("columns", "stock"):
        fixed, per_row = fit(ns, [r[f"{key}_ms"] for r in results])
        lines[key] = {"fixed_ms": fixed, "per_row_ms": per_row}
        print(f"\n{key}: {fixed:.1f} ms a step + {per_row:.2f} ms a row", end="")
    print()
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "columns.json").write_text(json.dumps({
        "threads": args.threads, "repeat": args.repeat, "context": args.context,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "rows": results, "fits": lines,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
