"""One stream through ``llmkit serve`` vs. the same GGUF in-process with
``llama_cpp.Llama`` (the ceiling), measured in the same run on this machine.

    .venv/bin/python bench/single_stream.py [--tokens 256] [--runs 3]

Prints a Markdown table and writes raw results to bench/results/single_stream.json.
Decode speed is timed from the first token to the last, so prompt reading does
not blur it; both sides generate exactly ``--tokens`` tokens (EOS is ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROMPT = "Write a long story about a lighthouse keeper."
ROOT = Path(__file__).resolve().parent


def in_process(path: str, tokens: int, threads: int) -> dict:
    import llama_cpp

    llm = llama_cpp.Llama(path, n_ctx=2048, n_threads=threads, verbose=False)
    eos = llm.token_eos()
    stamps = []
    t0 = time.perf_counter()
    for _ in llm.create_chat_completion(
        [{"role": "user", "content": PROMPT}],
        max_tokens=tokens,
        temperature=0,
        stream=True,
        logit_bias={eos: float("-inf")},
    ):
        stamps.append(time.perf_counter())
    return _summary(t0, stamps[1:])  # the first event is the role, not a token


def through_server(url: str, tokens: int) -> dict:
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    stamps = []
    t0 = time.perf_counter()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                stamps.append(time.perf_counter())
    return _summary(t0, stamps[1:])


def _summary(t0: float, stamps: list[float]) -> dict:
    n = len(stamps)
    return {
        "tokens": n,
        "ttft_s": stamps[0] - t0,
        "decode_tok_s": (n - 1) / (stamps[-1] - stamps[0]),
        "total_s": stamps[-1] - t0,
    }


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llmkit", "serve", "--port", str(port), "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("llmkit serve did not start")


def main() -> None:
    from llmkit.engines.llamacpp.model import default_threads
    from llmkit.models.bundled import bundled_model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    threads = default_threads()
    path = bundled_model_path()

    ceiling = [in_process(path, args.tokens, threads) for _ in range(args.runs)]
    proc, url = start_server(threads)
    try:
        through_server(url, 16)  # warm-up
        served = [through_server(url, args.tokens) for _ in range(args.runs)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    ratio = med(served, "decode_tok_s") / med(ceiling, "decode_tok_s")
    rows = [
        ("llama_cpp.Llama in-process (ceiling)", ceiling),
        ("llmkit serve, one stream", served),
    ]
    print(f"\n{args.tokens} tokens, {threads} threads, median of {args.runs} runs\n")
    print("| | decode tok/s | TTFT ms |")
    print("|---|---:|---:|")
    for name, rs in rows:
        print(f"| {name} | {med(rs, 'decode_tok_s'):.1f} | {med(rs, 'ttft_s') * 1000:.0f} |")
    print(f"\nllmkit / in-process: {ratio:.3f}")
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "single_stream.json").write_text(
        json.dumps(
            {
                "tokens": args.tokens,
                "threads": threads,
                "cpu_count": os.cpu_count(),
                "in_process": ceiling,
                "llmkit": served,
                "ratio": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
