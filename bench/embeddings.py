"""Embedding throughput: ``llmkit serve`` vs. llama-cpp-python's own server
started with ``--embedding true``, on the same GGUF, same threads, same run.

    .venv/bin/python bench/embeddings.py [--requests 24] [--sizes 1,64]

For each server and each request size (inputs per ``POST /v1/embeddings``), the
requests run one after another and the embeddings per second are the inputs
embedded over the wall time. Prints a Markdown table with the ratios; the raw
per-request results go to bench/results/embeddings.json. Failures are recorded,
not raised, so one bad request doesn't stop a run.

The peer keeps the GGUF's pooling, which for the bundled chat model is none: it
answers each input with one vector per token (and only chat or embeddings, not
both, per process: llama.cpp #11199). llmkit mean-pools and serves chat beside.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass

import httpx
from serving import free_port, save, start, stop  # bench/serving.py: the same way to start a server

WORDS = "lighthouse moon fox maps rain violin glacier bees train tea desert owl clock coral".split()


def sentences(n: int, offset: int) -> list[str]:
    """Short, distinct inputs (about a dozen tokens each), as RAG chunks' titles are."""
    return [
        f"A note about the {WORDS[(offset + i) % len(WORDS)]}, number {offset + i}, in brief."
        for i in range(n)
    ]


@dataclass
class RequestOutput:
    inputs: int
    success: bool = False
    error: str = ""
    latency: float = 0.0
    vectors: int = 0


def embed_request(client: httpx.Client, url: str, model: str, texts: list[str]) -> RequestOutput:
    out = RequestOutput(inputs=len(texts))
    body = {"model": model, "input": texts, "encoding_format": "float"}
    start_t = time.perf_counter()
    try:
        r = client.post(url + "/v1/embeddings", json=body)
        out.latency = time.perf_counter() - start_t
        r.raise_for_status()
        out.vectors = len(r.json()["data"])
        out.success = out.vectors == len(texts)
    except (httpx.HTTPError, KeyError, ValueError) as e:
        out.error = f"{type(e).__name__}: {e}"
    return out


def bench_server(
    name: str, cmd: list[str], url: str, probe: str, model: str, sizes: list[int], requests: int
) -> dict:
    proc = start(cmd, url, probe)
    result: dict = {}
    try:
        with httpx.Client(timeout=600) as client:
            embed_request(client, url, model, sentences(4, 0))  # warm-up (the first load)
            for size in sizes:
                n = max(2, requests // size) if size > 1 else requests
                began = time.perf_counter()
                outs = [
                    embed_request(client, url, model, sentences(size, k * size)) for k in range(n)
                ]
                wall = time.perf_counter() - began
                done = sum(o.inputs for o in outs if o.success)
                result[str(size)] = {
                    "requests": [asdict(o) for o in outs],
                    "wall_s": wall,
                    "embeddings_per_s": done / wall,
                    "failed": sum(not o.success for o in outs),
                }
    finally:
        stop(proc)
    print(f"  {name}: done", file=sys.stderr)
    return result


def main() -> None:
    from llmkit.engines.llamacpp.model import default_threads
    from llmkit.models.bundled import bundled_model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=24, help="requests of one input")
    ap.add_argument("--sizes", default="1,64")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    threads, path = default_threads(), bundled_model_path()
    p1, p2 = free_port(), free_port()
    ours = bench_server(
        "llmkit",
        [sys.executable, "-m", "llmkit", "serve", "--port", str(p1), "--threads", str(threads),
         "--max-model-len", "2048"],
        f"http://127.0.0.1:{p1}", "/health", "SmolLM2-135M-Instruct", sizes, args.requests,
    )  # fmt: skip
    peer = bench_server(
        "llama_cpp.server",
        [sys.executable, "-m", "llama_cpp.server", "--model", path, "--port", str(p2),
         "--n_threads", str(threads), "--n_ctx", "2048", "--embedding", "true"],
        f"http://127.0.0.1:{p2}", "/v1/models", path, sizes, args.requests,
    )  # fmt: skip
    report = {"threads": threads, "llmkit": ours, "llama_cpp_server": peer}
    save(report, "embeddings.json")
    print(table({"date": time.strftime("%Y-%m-%d"), **report}))


def table(r: dict) -> str:
    lines = [
        f"Embeddings/s, bundled SmolLM2-135M Q4_1, {r['threads']} threads, {r['date']}.",
        "",
        "| inputs per request | llmkit | llama_cpp.server --embedding | ratio |",
        "|---|---|---|---|",
    ]
    for size, a in r["llmkit"].items():
        b = r["llama_cpp_server"][size]
        ratio = a["embeddings_per_s"] / b["embeddings_per_s"] if b["embeddings_per_s"] else 0
        failed = f" ({a['failed']}/{b['failed']} failed)" if a["failed"] or b["failed"] else ""
        lines.append(
            f"| {size} | {a['embeddings_per_s']:.1f} | {b['embeddings_per_s']:.1f} | "
            f"{ratio:.2f}x{failed} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
