"""Rerank throughput: ``llmkit serve`` vs. llama.cpp's own ``llama-server --rerank``,
on the same GGUF, same threads, same run.

    .venv/bin/python bench/rerank.py [--model X.gguf] [--requests 32] [--sizes 1,64]

Without ``--model``, the reranker is made here: bge-reranker-base's shape
(XLM-RoBERTa, 12 layers of 768, 512 positions) with random weights and a small
trained vocabulary, converted to F16 by llama.cpp's converter (the same maker
the tests use, ``tests/tiny_reranker.py``), cached under bench/results/. Speed
depends on the shape, not on the weights.

For each server and each request size (documents per ``POST /v1/rerank``), the
requests run one after another and documents/s is the documents scored over the
wall time. Both servers answer the same requests; the largest difference between
their scores is reported too (same GGUF, same kernels: it should be tiny).
Prints a Markdown table with the ratios; the raw per-request results go to
bench/results/rerank.json. Failures are recorded, not raised.

The peer is built from the pinned llama.cpp source by ``llama_server.py`` (once
per CPU, several minutes) and runs with ``--rerank``, ``--parallel 8`` (eight
documents decoded together) and a context of 8 x 512 tokens.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import llama_server
from serving import ROOT, free_port, save, start, stop

# The model maker is the tests' own: one definition of the tiny cross-encoder.
sys.path.insert(0, str(ROOT.parent / "tests"))
import tiny_reranker

#: bge-reranker-base's shape (XLMRobertaForSequenceClassification).
BGE_BASE = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
)
QUERY = "Which animals live in the mountains of South America?"
WORDS = "lighthouse moon fox maps rain violin glacier bees train tea desert owl clock coral".split()


#: What follows each passage's distinct start (shortened for the tiny model's 128 tokens).
TAIL = ": llamas live in the Andes, the cat sat on the mat, and water boils at one hundred degrees."


def passages(n: int, offset: int, tail: str = TAIL) -> list[str]:
    """Short, distinct documents (a few dozen tokens each), as retrieved RAG chunks are."""
    return [
        f"A passage about the {WORDS[(offset + i) % len(WORDS)]} and the "
        f"{WORDS[(offset + 3 * i) % len(WORDS)]}, number {offset + i}{tail}"
        for i in range(n)
    ]


@dataclass
class RequestOutput:
    documents: int
    success: bool = False
    error: str = ""
    latency: float = 0.0
    scores: list[float] = field(default_factory=list)  # by document index


def rerank_request(client: httpx.Client, url: str, model: str, docs: list[str]) -> RequestOutput:
    """One request; a failure is recorded with what the server said."""
    out = RequestOutput(documents=len(docs))
    body = {"model": model, "query": QUERY, "documents": docs}
    began = time.perf_counter()
    try:
        r = client.post(url + "/v1/rerank", json=body)
        out.latency = time.perf_counter() - began
        r.raise_for_status()
        results = r.json()["results"]
        out.scores = [s for _, s in sorted((x["index"], x["relevance_score"]) for x in results)]
        out.success = len(out.scores) == len(docs)
    except httpx.HTTPStatusError as e:
        out.error = f"{e.response.status_code}: {e.response.text[:500]}"
    except (httpx.HTTPError, KeyError, ValueError) as e:
        out.error = f"{type(e).__name__}: {e}"
    return out


def run_sizes(url: str, model: str, sizes: list[int], requests: int, tail: str = TAIL) -> dict:
    """Each size's requests one after another, after one warm-up request."""
    result: dict = {}
    with httpx.Client(timeout=600) as client:
        rerank_request(client, url, model, passages(4, 0, tail))  # the first load
        for size in sizes:
            n = max(2, requests // size) if size > 1 else requests
            began = time.perf_counter()
            outs = [
                rerank_request(client, url, model, passages(size, k * size, tail)) for k in range(n)
            ]
            wall = time.perf_counter() - began
            done = sum(o.documents for o in outs if o.success)
            result[str(size)] = {
                "requests": [asdict(o) for o in outs],
                "wall_s": wall,
                "documents_per_s": done / wall,
                "failed": sum(not o.success for o in outs),
            }
    return result


def largest_difference(a: dict, b: dict) -> float:
    """The largest |score difference| over the documents both servers scored."""
    worst = 0.0
    for size, ra in a.items():
        for x, y in zip(ra["requests"], b[size]["requests"], strict=True):
            if x["success"] and y["success"]:
                worst = max(
                    [worst, *(abs(p - q) for p, q in zip(x["scores"], y["scores"], strict=True))]
                )
    return worst


def made_model(shape: dict, name: str) -> Path:
    """The random-weights reranker of ``shape`` as an F16 GGUF, made once."""
    gguf = ROOT / "results" / f"{name}.gguf"
    if not gguf.exists():
        gguf.parent.mkdir(parents=True, exist_ok=True)
        print(f"==> making {gguf.name} (random weights) and converting it", file=sys.stderr)
        model_dir = tiny_reranker.make_cross_encoder(ROOT / "results" / name, shape)
        tiny_reranker.convert(model_dir, gguf.with_suffix(".tmp"), outtype="f16").rename(gguf)
    return gguf


def main() -> None:
    from llmkit.engines.llamacpp.model import default_threads

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a reranker GGUF (default: bge-reranker-base's shape, made)")
    ap.add_argument("--requests", type=int, default=32, help="requests of one document")
    ap.add_argument("--sizes", default="1,64")
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny model (a quick check)")
    ap.add_argument("--no-peer", action="store_true", help="llmkit alone (no llama-server build)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    threads = default_threads()
    if args.model:
        path = Path(args.model)
    elif args.tiny:
        path = made_model(tiny_reranker.TINY, "tiny-reranker")
    else:
        path = made_model(BGE_BASE, "bge-reranker-base-shaped")
    tail = "." if args.tiny else TAIL
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "llmkit", "serve", "--port", str(port), "--model", str(path),
           "--served-model-name", "reranker", "--threads", str(threads)]  # fmt: skip
    proc = start(cmd, url, "/health")
    try:
        ours = run_sizes(url, "reranker", sizes, args.requests, tail)
    finally:
        stop(proc)
    print("  llmkit: done", file=sys.stderr)
    report: dict = {"model": str(path), "threads": threads, "llmkit": ours}
    if not args.no_peer:
        llama_server.build(lambda line: print(line, file=sys.stderr))
        peer_args = ["--rerank", "--threads", str(threads), "--parallel", "8",
                     "--ctx-size", str(8 * 512), "--ubatch-size", "512"]  # fmt: skip
        with llama_server.serve(path, free_port(), peer_args) as peer_url:
            report["llama_server"] = run_sizes(peer_url, "reranker", sizes, args.requests, tail)
        report["llama_server_args"] = peer_args
        report["largest_score_difference"] = largest_difference(ours, report["llama_server"])
        print("  llama-server: done", file=sys.stderr)
    save(report, "rerank.json")
    print(table({"date": time.strftime("%Y-%m-%d"), **report}))


def table(r: dict) -> str:
    peer = r.get("llama_server")
    lines = [
        f"Documents/s, {Path(r['model']).name}, {r['threads']} threads, {r['date']}.",
        "",
        "| documents per request | llmkit | llama-server --rerank | ratio |",
        "|---|---|---|---|",
    ]
    for size, a in r["llmkit"].items():
        b = peer[size] if peer else {"documents_per_s": 0.0, "failed": 0}
        ratio = (
            f"{a['documents_per_s'] / b['documents_per_s']:.2f}x" if b["documents_per_s"] else "-"
        )
        failed = f" ({a['failed']}/{b['failed']} failed)" if a["failed"] or b["failed"] else ""
        theirs = f"{b['documents_per_s']:.1f}" if peer else "-"
        lines.append(f"| {size} | {a['documents_per_s']:.1f} | {theirs} | {ratio}{failed} |")
    if peer:
        lines += [
            "",
            f"Largest score difference between the two: {r['largest_score_difference']:.2g}.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
