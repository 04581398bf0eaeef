"""Serving throughput and latency: ``llmkit serve`` vs. llama-cpp-python's own
server (``python -m llama_cpp.server``) on the same GGUF, same threads, same run.

    .venv/bin/python bench/serving.py [--tokens 128] [--levels 1,4,8,16]

Reports, as a Markdown table and JSON (bench/results/serving.json):
in-process ``llama_cpp.Llama`` tokens/s (the ceiling); each server's aggregate
streaming tokens/s at each concurrency, TTFT p50/p99 and failed requests; and
the TTFT of turns 1 and 10 of a multi-turn chat. Every request generates exactly
``--tokens`` tokens (end-of-text is banned with logit_bias on both servers).
Failures are recorded, not raised, so one bad request doesn't stop a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent
TOPICS = [
    "a lighthouse",
    "the moon",
    "a red fox",
    "old maps",
    "rain",
    "a violin",
    "glaciers",
    "bees",
    "a train",
    "tea",
    "deserts",
    "owls",
    "clocks",
    "coral",
    "snow",
    "kites",
]


@dataclass
class RequestInput:
    url: str
    model: str
    messages: list[dict]
    max_tokens: int
    eos_id: int


@dataclass
class RequestOutput:
    success: bool = False
    error: str = ""
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    tokens: int = 0
    text: str = ""


async def chat_request(client: httpx.AsyncClient, inp: RequestInput) -> RequestOutput:
    body = {
        "model": inp.model,
        "messages": inp.messages,
        "max_tokens": inp.max_tokens,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "stream": True,
        "logit_bias": {str(inp.eos_id): -100},
    }
    out = RequestOutput()
    start = last = time.perf_counter()
    parts: list[str] = []
    try:
        async with client.stream("POST", inp.url + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                out.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return out
            finished = False
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    out.error = str(data["error"])[:200]
                    return out
                for ch in data.get("choices", []):
                    now = time.perf_counter()
                    content = ch.get("delta", {}).get("content")
                    if content:
                        if not parts:
                            out.ttft = now - start
                        else:
                            out.itl.append(now - last)
                        last = now
                        parts.append(content)
                        out.tokens += 1
                    finished = finished or ch.get("finish_reason") is not None
                if (u := data.get("usage")) and u.get("completion_tokens") is not None:
                    # Counted by the server: a chunk can carry several tokens (drafts a
                    # speculating step verified), so chunks are not tokens.
                    out.tokens = u["completion_tokens"]
            out.latency = time.perf_counter() - start
            out.text = "".join(parts)
            out.success = finished
            if not finished:
                out.error = "stream ended without a finish_reason"
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        out.error = f"{type(e).__name__}: {e}"
    return out


async def run_level(url: str, model: str, n: int, tokens: int, eos: int) -> dict:
    limits = httpx.Limits(max_connections=n + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        inputs = [
            RequestInput(
                url,
                model,
                [{"role": "user", "content": f"Write about {TOPICS[i % 16]}."}],
                tokens,
                eos,
            )
            for i in range(n)
        ]
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(chat_request(client, i) for i in inputs))
        wall = time.perf_counter() - t0
    ok = [o for o in outs if o.success]
    decode = [(o.tokens - 1) / (o.latency - o.ttft) for o in ok if o.tokens > 1]
    ttfts = sorted(o.ttft for o in ok) or [float("nan")]
    return {
        "concurrency": n,
        "wall_s": wall,
        "tok_s": sum(o.tokens for o in ok) / wall,
        # per stream, first token to last: the figure comparable to in-process decoding
        "decode_tok_s": statistics.median(decode) if decode else 0.0,
        "ttft_p50_ms": 1000 * statistics.median(ttfts),
        "ttft_p99_ms": 1000 * ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        "failed": len(outs) - len(ok),
        "errors": sorted({o.error for o in outs if o.error})[:3],
        "requests": [asdict(o) | {"itl": None} for o in outs],
    }


async def multi_turn(url: str, model: str, eos: int, turns: int = 10) -> list[float]:
    """TTFT of each turn of one conversation that resends its whole history."""
    messages: list[dict] = [{"role": "system", "content": "You are a storyteller."}]
    ttfts = []
    async with httpx.AsyncClient(timeout=600) as client:
        for t in range(turns):
            messages.append({"role": "user", "content": f"Continue the story, part {t + 1}."})
            out = await chat_request(client, RequestInput(url, model, messages, 48, eos))
            ttfts.append(out.ttft if out.success else float("nan"))
            messages.append({"role": "assistant", "content": out.text})
    return ttfts


def in_process(path: str, tokens: int, threads: int) -> float:
    import llama_cpp

    llm = llama_cpp.Llama(path, n_ctx=2048, n_threads=threads, verbose=False)
    stamps = []
    for _ in llm.create_chat_completion(
        [{"role": "user", "content": "Write about a lighthouse."}],
        max_tokens=tokens,
        temperature=0,
        stream=True,
        logit_bias={llm.token_eos(): -100.0},
    ):
        stamps.append(time.perf_counter())
    stamps = stamps[1:]  # the first event carries the role only
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str, probe: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[:4]} exited with {proc.returncode}")
        try:
            if httpx.get(url + probe).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{cmd[:4]} did not start")


def bench_server(
    name: str,
    cmd: list[str],
    url: str,
    probe: str,
    model: str,
    levels: list[int],
    tokens: int,
    eos: int,
) -> dict:
    proc = start(cmd, url, probe)
    try:
        asyncio.run(run_level(url, model, 1, 8, eos))  # warm-up
        result = {"levels": [asyncio.run(run_level(url, model, n, tokens, eos)) for n in levels]}
        result["multi_turn_ttft_s"] = asyncio.run(multi_turn(url, model, eos))
    finally:
        stop(proc)
    print(f"  {name}: done", file=sys.stderr)
    return result


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    import llama_cpp

    from llmkit.engines.llamacpp.model import default_threads
    from llmkit.models.bundled import bundled_model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--levels", default="1,4,8,16")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    threads = default_threads()
    path = bundled_model_path()
    eos = llama_cpp.Llama(path, vocab_only=True, verbose=False).token_eos()

    ceiling = in_process(path, args.tokens, threads)
    p1, p2 = free_port(), free_port()
    ours = bench_server(
        "llmkit",
        [
            sys.executable,
            "-m",
            "llmkit",
            "serve",
            "--port",
            str(p1),
            "--threads",
            str(threads),
            "--parallel",
            str(max(levels)),
            "--max-model-len",
            "2048",
        ],
        f"http://127.0.0.1:{p1}",
        "/health",
        "SmolLM2-135M-Instruct",
        levels,
        args.tokens,
        eos,
    )
    peer = bench_server(
        "llama_cpp.server",
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            path,
            "--port",
            str(p2),
            "--n_threads",
            str(threads),
            "--n_ctx",
            "2048",
        ],
        f"http://127.0.0.1:{p2}",
        "/v1/models",
        path,
        levels,
        args.tokens,
        eos,
    )

    report = {
        "date": time.strftime("%Y-%m-%d"),  # for markdown(); save() stamps the file too
        "threads": threads,
        "tokens": args.tokens,
        "in_process_tok_s": ceiling,
        "llmkit": ours,
        "llama_cpp_server": peer,
    }
    save(report, "serving.json")
    print(markdown(report))


def save(report: dict, name: str) -> None:
    """The raw results, dated, under bench/results/."""
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), **report}, indent=2))


def markdown(r: dict) -> str:
    single = r["llmkit"]["levels"][0]["tok_s"]
    lines = [
        f"{r['tokens']}-token chat streams, {r['threads']} threads, {r['date']}. "
        f"In-process `llama_cpp.Llama`: **{r['in_process_tok_s']:.1f} tok/s** (ceiling).",
        "",
        "| clients | llmkit tok/s | peer tok/s | llmkit / peer | llmkit / its 1-stream "
        "| TTFT p50 / p99 ms (llmkit) | TTFT p50 / p99 ms (peer) | failed (llmkit / peer) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(r["llmkit"]["levels"], r["llama_cpp_server"]["levels"], strict=True):
        lines.append(
            f"| {a['concurrency']} | {a['tok_s']:.1f} | {b['tok_s']:.1f} | "
            f"{a['tok_s'] / b['tok_s']:.2f} | {a['tok_s'] / single:.2f} | "
            f"{a['ttft_p50_ms']:.0f} / {a['ttft_p99_ms']:.0f} | "
            f"{b['ttft_p50_ms']:.0f} / {b['ttft_p99_ms']:.0f} | {a['failed']} / {b['failed']} |"
        )
    ta, tb = r["llmkit"]["multi_turn_ttft_s"], r["llama_cpp_server"]["multi_turn_ttft_s"]
    lines += [
        "",
        "Multi-turn chat TTFT, turn 1 → turn 10: "
        f"llmkit {ta[0] * 1000:.0f} → {ta[-1] * 1000:.0f} ms "
        f"(×{ta[-1] / ta[0]:.2f}); peer {tb[0] * 1000:.0f} → {tb[-1] * 1000:.0f} ms "
        f"(×{tb[-1] / tb[0]:.2f}).",
        "One stream, decode tok/s (first token to last): llmkit "
        f"{r['llmkit']['levels'][0]['decode_tok_s']:.1f}, in-process {r['in_process_tok_s']:.1f}: "
        f"ratio **{r['llmkit']['levels'][0]['decode_tok_s'] / r['in_process_tok_s']:.3f}**.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
