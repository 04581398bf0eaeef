"""Image prompts: ``llmkit serve`` vs. llama.cpp's own C++ ``llama-server``, on the
same GGUF and projector, in the same run.

    .venv/bin/python bench/vision.py [--model LM.gguf --mmproj MMPROJ.gguf] [--size 448]
                                     [--quick]

Without ``--model`` it makes the tiny random SmolVLM of the tests (tests/tiny_vlm.py)
in a temporary folder: a check that the script runs, not a measurement (its vision
tower is two layers at 32 pixels). Give a real one (SmolVLM-256M's GGUF and mmproj,
say) for figures worth a table.

Both servers get the same threads and ``--parallel 8`` (llama-server: ``-c 8 x CTX``).
Every request is one image (``--size`` pixels square, random noise, a fresh one per
request so that nothing is cached) and a short question, answered with one token
(``max_tokens: 1``), over the OpenAI API with a data URI: its latency is the image
prompt's processing time, encode + prefill, as a client sees it. Rows:

- image prompts at 1 and 8 concurrent requests: latency (median, p90) and images/s;
- the cached second question: an image asked about once, then a second question
  about the same image (the same history): its time to first token, streamed,
  against a cold one's.

Markdown to stdout, raw results to bench/results/vision.json. ``llama_server.py``
finds the cached peer binary (built once per CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import llama_server
import serving

QUICK = dict(levels=[1, 8], rounds=2, cached=3)
FULL = dict(levels=[1, 8], rounds=4, cached=8)


def noise_png(size: int, seed: int) -> str:
    """A data URI of a ``size`` x ``size`` PNG of random pixels, one per ``seed``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def body(uri: str, question: str, *, stream: bool = False) -> dict:
    return {
        "model": "vlm",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": uri}},
                    {"type": "text", "text": question},
                ],
            }
        ],
        "max_tokens": 1,
        "temperature": 0,
        "stream": stream,
    }


async def one(client: httpx.AsyncClient, url: str, payload: dict) -> dict:
    """One request's latency (to its last byte, or its first streamed token)."""
    start = time.perf_counter()
    out = {"ok": False, "latency": 0.0, "ttft": 0.0, "error": ""}
    try:
        if payload.get("stream"):
            async with client.stream("POST", url + "/v1/chat/completions", json=payload) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and '"content"' in line and not out["ttft"]:
                        out["ttft"] = time.perf_counter() - start
        else:
            r = await client.post(url + "/v1/chat/completions", json=payload)
            r.raise_for_status()
        out["latency"] = time.perf_counter() - start
        out["ok"] = True
    except httpx.HTTPError as e:  # recorded, not raised: one failure does not end a run
        out["error"] = f"{type(e).__name__}: {e}"
    return out


async def level(url: str, n: int, rounds: int, size: int, seed: int) -> dict:
    """``rounds`` bursts of ``n`` image prompts at once, each image new."""
    outs: list[dict] = []
    wall = 0.0
    async with httpx.AsyncClient(timeout=600) as client:
        for r in range(rounds):
            uris = [noise_png(size, seed + r * n + i) for i in range(n)]
            start = time.perf_counter()
            outs += await asyncio.gather(*(one(client, url, body(u, "Describe it.")) for u in uris))
            wall += time.perf_counter() - start
    ok = [o["latency"] for o in outs if o["ok"]]
    return {
        "n": n,
        "ok": len(ok),
        "failed": [o["error"] for o in outs if not o["ok"]][:3],
        "median_s": statistics.median(ok) if ok else None,
        "p90_s": sorted(ok)[math.ceil(0.9 * len(ok)) - 1] if ok else None,
        "images_per_s": len(ok) / wall if wall else None,
    }


async def cached(url: str, times: int, size: int, seed: int) -> dict:
    """A cold question about a new image, then a second one about the same image:
    time to first token of each (streamed)."""
    cold, warm = [], []
    async with httpx.AsyncClient(timeout=600) as client:
        for i in range(times):
            uri = noise_png(size, seed + i)
            first = await one(client, url, body(uri, "What is in this image?", stream=True))
            second = await one(client, url, body(uri, "What colour is it?", stream=True))
            if first["ok"] and second["ok"]:
                cold.append(first["ttft"])
                warm.append(second["ttft"])
    return {
        "cold_ttft_s": statistics.median(cold) if cold else None,
        "cached_ttft_s": statistics.median(warm) if warm else None,
    }


def run_server(url: str, cfg: dict, size: int, salt: int) -> dict:
    asyncio.run(level(url, 1, 1, size, salt))  # warm-up: first allocations, the projector
    levels = [
        asyncio.run(level(url, n, cfg["rounds"], size, salt + 1000 * n)) for n in cfg["levels"]
    ]
    warm = asyncio.run(cached(url, cfg["cached"], size, salt + 99_000))
    return {"levels": levels, "cached": warm}


def fmt(x: float | None, unit: str = "s") -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if unit == "s" else f"{x:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def markdown(r: dict) -> str:
    ours, peer = r["llmkit"], r["llama_server"]
    lines = [
        f"Image prompts, {r['size']}x{r['size']} px, {r['threads']} threads, {r['model']} "
        f"({r['date']}); ratio: llmkit / llama-server (lower is better for times).",
        "",
        "| | llmkit | llama-server | ratio |",
        "|---|---|---|---|",
    ]
    for a, b in zip(ours["levels"], peer["levels"], strict=True):
        n = a["n"]
        lines.append(f"| {n} at once: median latency | {fmt(a['median_s'])} | "
                     f"{fmt(b['median_s'])} | {ratio(a['median_s'], b['median_s'])} |")  # fmt: skip
        lines.append(f"| {n} at once: p90 latency | {fmt(a['p90_s'])} | {fmt(b['p90_s'])} | "
                     f"{ratio(a['p90_s'], b['p90_s'])} |")  # fmt: skip
        ia, ib = a["images_per_s"], b["images_per_s"]
        lines.append(f"| {n} at once: images/s | {fmt(ia, '')} | {fmt(ib, '')} | "
                     f"{ratio(ia, ib)} (higher is better) |")  # fmt: skip
    for key, label in (("cold_ttft_s", "first question, TTFT"),
                       ("cached_ttft_s", "second question, same image, TTFT")):  # fmt: skip
        a, b = ours["cached"][key], peer["cached"][key]
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    failed = [x for side in (ours, peer) for lv in side["levels"] for x in lv["failed"]]
    if failed:
        lines += ["", f"Failures (first few): {failed[:3]}"]
    return "\n".join(lines)


def main() -> None:
    from llmkit.engines.llamacpp.model import default_threads

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="the text GGUF (default: the tiny test model)")
    ap.add_argument("--mmproj", type=Path, help="its projector GGUF")
    ap.add_argument("--size", type=int, default=448, help="image side in pixels")
    ap.add_argument("--ctx", type=int, default=4096, help="context per sequence")
    ap.add_argument("--quick", action="store_true", help="fewer rounds: a check that it runs")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    threads = default_threads()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            sys.path.insert(0, str(serving.ROOT.parent))
            from tests.tiny_vlm import make

            made = make(Path(tmp))
            args.model, args.mmproj = made.lm, made.mmproj
            args.size = min(args.size, 64)
            args.ctx = min(args.ctx, 1024)  # it was made with 2048 positions
        if args.mmproj is None:
            raise SystemExit("--mmproj: the model's projector GGUF is needed with --model")
        par = max(cfg["levels"])
        p1, p2 = serving.free_port(), serving.free_port()
        ours_cmd = [sys.executable, "-m", "llmkit", "serve", "--model", str(args.model),
                    "--mmproj", str(args.mmproj), "--served-model-name", "vlm",
                    "--port", str(p1), "--threads", str(threads), "--parallel", str(par),
                    "--max-model-len", str(args.ctx)]  # fmt: skip
        peer_args = ["--mmproj", str(args.mmproj), "-t", str(threads), "--parallel", str(par),
                     "-c", str(par * args.ctx), "-a", "vlm"]  # fmt: skip
        report: dict = {"date": time.strftime("%Y-%m-%d"), "threads": threads,
                        "size": args.size, "model": args.model.name}  # fmt: skip
        proc = serving.start(ours_cmd, f"http://127.0.0.1:{p1}", "/health")
        try:
            report["llmkit"] = run_server(f"http://127.0.0.1:{p1}", cfg, args.size, 1)
        finally:
            serving.stop(proc)
        with llama_server.serve(args.model, p2, peer_args) as url:
            report["llama_server"] = run_server(url, cfg, args.size, 1)
    serving.save(report, "vision.json")
    print(markdown(report))


if __name__ == "__main__":
    main()
