"""A bounded soak: about 2,000 mixed requests of both dialects against one
``llmkit serve``, 16 at a time, then a check that nothing leaked.

    .venv/bin/python bench/soak.py [--requests 2000] [--concurrency 16]

The mix: OpenAI chat (streamed and whole), completions, Ollama chat (streamed
and whole) and generate; about one in eight streams is dropped by the client
after its first event; one in twenty asks for a model that does not exist or a
context that does not fit (those must be clean 4xx). Everything else must
succeed. After a warm-up (the first tenth) and at the end, the server's
resident memory, threads and open file descriptors are read from /proc, and
``/health`` must show no running or queued generation. Raw results go to
bench/results/soak.json; the summary is a table.

The peer is the server itself at warm-up: growth is what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent
MODEL = "SmolLM2-135M-Instruct"
TOPICS = ["rain", "owls", "tea", "kites", "a violin", "glaciers", "bees", "clocks"]


@dataclass
class Outcome:
    kind: str
    status: int
    expected: bool  # a success, or a refusal this request was meant to get
    seconds: float
    error: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(x.split()[1]) * 1024 for x in status if x.startswith("VmRSS"))
    threads = next(int(x.split()[1]) for x in status if x.startswith("Threads"))
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return {"rss": rss, "threads": threads, "fds": fds}


def plan(i: int, rng: random.Random) -> tuple[str, str, dict, str]:
    """(kind, path, body, expect) for request ``i``; expect: ok, 4xx or cancel."""
    topic = TOPICS[i % len(TOPICS)]
    msgs = [{"role": "user", "content": f"Say something about {topic}."}]
    n = rng.randint(4, 24)
    roll = rng.random()
    if roll < 0.025:
        return "bad-model", "/v1/chat/completions", {"model": "nope", "messages": msgs}, "4xx"
    if roll < 0.05:  # more tokens than the context holds: a 400 in either dialect
        if i % 2:
            body = {"model": MODEL, "messages": msgs, "options": {"num_predict": 10_000_000}}
            return "too-long", "/api/chat", body, "4xx"
        body = {"model": MODEL, "messages": msgs, "max_tokens": 10_000_000}
        return "too-long", "/v1/chat/completions", body, "4xx"
    kinds = [
        ("openai-stream", "/v1/chat/completions", {"model": MODEL, "messages": msgs,
         "max_tokens": n, "stream": True}),
        ("openai-whole", "/v1/chat/completions", {"model": MODEL, "messages": msgs,
         "max_tokens": n}),
        ("completion", "/v1/completions", {"model": MODEL, "prompt": f"About {topic}:",
         "max_tokens": n, "stream": i % 2 == 0}),
        ("ollama-stream", "/api/chat", {"model": MODEL, "messages": msgs,
         "options": {"num_predict": n}}),
        ("ollama-whole", "/api/chat", {"model": MODEL, "messages": msgs, "stream": False,
         "options": {"num_predict": n}}),
        ("generate", "/api/generate", {"model": MODEL, "prompt": f"About {topic}:",
         "options": {"num_predict": n}}),
    ]  # fmt: skip
    kind, path, body = kinds[i % len(kinds)]
    streamed = body.get("stream", path.startswith("/api/"))
    expect = "cancel" if streamed and rng.random() < 0.125 else "ok"
    return kind, path, body, expect


async def one(http: httpx.AsyncClient, i: int, rng: random.Random) -> Outcome:
    kind, path, body, expect = plan(i, rng)
    started = time.perf_counter()
    try:
        async with http.stream("POST", path, json=body) as r:
            if expect == "cancel" and r.status_code == 200:
                async for _ in r.aiter_lines():
                    break  # the client leaves after the first event
                return Outcome(kind + "-cancelled", 200, True, time.perf_counter() - started)
            text = (await r.aread()).decode()
        ok = r.status_code == 200 and '"error"' not in text
        if expect == "4xx":
            ok = 400 <= r.status_code < 500 and '"error"' in text
        err = "" if ok else text[-300:]
        return Outcome(kind, r.status_code, ok, time.perf_counter() - started, err)
    except httpx.HTTPError as e:
        return Outcome(kind, 0, False, time.perf_counter() - started, repr(e))


async def run(url: str, total: int, concurrency: int, pid: int) -> dict:
    rng = random.Random(7)
    outcomes: list[Outcome] = []
    marks: dict[str, dict[str, int]] = {}
    warm = total // 10
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        queue = iter(range(total))

        async def worker() -> None:
            for i in queue:
                outcomes.append(await one(http, i, rng))
                if len(outcomes) == warm and "warm" not in marks:
                    marks["warm"] = proc_stats(pid)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await asyncio.sleep(2)  # cancelled streams are freed between decode steps
        health = (await http.get("/health")).json()
    marks["end"] = proc_stats(pid)
    return {"outcomes": outcomes, "marks": marks, "elapsed": elapsed, "health": health}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    port = free_port()
    log = open(ROOT / "results" / "soak-server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llmkit", "serve", "--port", str(port), "--parallel", "8",
         "--max-model-len", "2048", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the server did not start; see bench/results/soak-server.log")
            time.sleep(0.2)
        result = asyncio.run(run(url, args.requests, args.concurrency, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
    report(result, server.returncode)


def report(result: dict, exit_code: int) -> None:
    outcomes: list[Outcome] = result["outcomes"]
    warm, end = result["marks"]["warm"], result["marks"]["end"]
    unexpected = [o for o in outcomes if not o.expected]
    running = sum(m["running"] + m["queued"] for m in result["health"]["models"])
    by_kind = Counter(o.kind for o in outcomes)
    growth = (end["rss"] - warm["rss"]) / warm["rss"]
    rows = [
        ("requests", len(outcomes)),
        ("elapsed s", f"{result['elapsed']:.0f}"),
        ("unexpected errors", len(unexpected)),
        ("RSS after warm-up → end MiB", f"{warm['rss'] / 2**20:.0f} → {end['rss'] / 2**20:.0f}"),
        ("RSS growth", f"{growth:+.1%}"),
        ("threads warm-up → end", f"{warm['threads']} → {end['threads']}"),
        ("open fds warm-up → end", f"{warm['fds']} → {end['fds']}"),
        ("generations left running/queued", running),
        ("server exit code on SIGTERM", exit_code),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\nby kind: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
    for o in unexpected[:10]:
        print(f"unexpected: {o.kind} {o.status} {o.error}")
    out = ROOT / "results" / "soak.json"
    raw = {k: v for k, v in result.items() if k != "outcomes"}
    raw["outcomes"] = [asdict(o) for o in outcomes]
    out.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    (ROOT / "results").mkdir(exist_ok=True)
    main()
