"""Shared-prefix serving: ``llmkit serve`` vs. llama.cpp's own C++ ``llama-server``.

    .venv/bin/python bench/prefix.py [--quick] [--ctx 4096] [--tokens 128]

Both servers get the bundled GGUF, the same threads and the same per-slot context
(llmkit ``--parallel 16 --max-model-len CTX``; ``llama-server --parallel 16 -c 16×CTX``,
its defaults otherwise, the host prompt cache included). Every reply streams exactly
``--tokens`` tokens (end-of-text banned with logit_bias). Rows, per server:

- plain chats, no shared prefix, at 1, 4, 8 and 16 streams;
- 16 requests at once sharing a ~1,000-token system prompt, cold (a fresh salt opens
  the prompt, so neither server has seen it) and warm (the prompt sent once before);
- 64 conversations of 10 turns, 16 at a time, interleaved turn by turn: TTFT at turn 1
  and the last turn, and the share of prompt tokens served from cache where the server
  says (llama-server's ``timings.cache_n``, the usage's ``cached_tokens``);
- memory (``kv_memory.py``): 32 ~2,000-token conversations sharing a system prompt,
  all at once, in the same KV memory: how many each server decodes at once without
  a failure.

Plus the in-process ``llama_cpp.Llama`` single-stream ceiling. Markdown to stdout,
JSON to bench/results/prefix.json. ``llama_server.py`` builds the peer (once per CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid

import httpx
import kv_memory
import llama_server
import serving

MODEL = "SmolLM2-135M-Instruct"
FULL = dict(levels=[1, 4, 8, 16], shared=16, prefix=1000, convs=64, turns=10, window=16,
            mem_c=16384, mem_n=32, mem_prefix=1000, conv=2000)  # fmt: skip
QUICK = dict(levels=[1, 4], shared=4, prefix=200, convs=6, turns=3, window=3,
             mem_c=4096, mem_n=6, mem_prefix=200, conv=600)  # fmt: skip


def filler(vocab, n_tokens: int, seed: str) -> str:
    """Deterministic prose of about `n_tokens` tokens, distinct for each `seed`."""
    parts, text = [], ""
    i = 0
    while len(vocab.tokenize(text.encode(), add_bos=False)) < n_tokens:
        topic = serving.TOPICS[i % len(serving.TOPICS)]
        parts.append(
            f"Rule {i + 1} ({seed}): when asked about {topic}, answer plainly, name one fact "
            f"about {topic} and one question a reader might ask next."
        )
        i += 1
        text = " ".join(parts)
    return text


async def chat(
    client: httpx.AsyncClient, url: str, messages: list[dict], tokens: int, eos: int
) -> dict:
    """One streamed chat; what the server said about its prompt cache kept alongside."""
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": {str(eos): -100},
    }
    out = {"ok": False, "error": "", "ttft": 0.0, "tokens": 0, "text": "", "prompt": None,
           "cached": None}  # fmt: skip
    start = time.perf_counter()
    parts: list[str] = []
    generated: int | None = None
    finished = False
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                out["error"] = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return out
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    out["error"] = str(data["error"])[:200]
                    return out
                for ch in data.get("choices", []):
                    if content := ch.get("delta", {}).get("content"):
                        if not parts:
                            out["first_at"] = time.perf_counter()
                            out["ttft"] = out["first_at"] - start
                        parts.append(content)
                    finished = finished or ch.get("finish_reason") is not None
                if (u := data.get("usage")) and u.get("completion_tokens") is not None:
                    # Counted by the server: a chunk can carry several tokens (drafts a
                    # speculating step verified), so chunks are not tokens.
                    generated = u["completion_tokens"]
                if t := data.get("timings"):  # llama-server: reused + processed tokens
                    out["cached"] = t.get("cache_n", 0)
                    out["prompt"] = out["cached"] + t.get("prompt_n", 0)
                elif u := data.get("usage"):
                    out["prompt"] = u.get("prompt_tokens")
                    details = u.get("prompt_tokens_details") or {}
                    out["cached"] = details.get("cached_tokens")
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    out.update(ok=finished and bool(parts), text="".join(parts),
               tokens=len(parts) if generated is None else generated,
               end_at=time.perf_counter())  # fmt: skip
    if not out["ok"]:
        out["error"] = "stream ended without a finish_reason or a token"
    return out


def summary(outs: list[dict], wall: float) -> dict:
    ok = [o for o in outs if o["ok"]]
    ttfts = sorted(o["ttft"] for o in ok) or [float("nan")]
    counted = [o for o in ok if o["prompt"] and o["cached"] is not None]
    return {
        "requests": len(outs),
        "wall_s": wall,
        "tok_s": sum(o["tokens"] for o in ok) / wall,
        "ttft_p50_ms": 1000 * statistics.median(ttfts),
        "ttft_p99_ms": 1000 * ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        "failed": len(outs) - len(ok),
        "errors": sorted({o["error"] for o in outs if o["error"]})[:3],
        # None where the server reports nothing about its cache
        "cache_hit": (
            sum(o["cached"] for o in counted) / sum(o["prompt"] for o in counted)
            if counted
            else None
        ),
    }


async def burst(url: str, chats: list[list[dict]], tokens: int, eos: int, window: int) -> dict:
    """All `chats` at once, at most `window` in flight."""
    gate = asyncio.Semaphore(window)
    # A connection per request: reusing one the server is closing fails the request on the
    # client's side (seen with llama-server's keep-alive), which would count against it.
    limits = httpx.Limits(max_connections=window + 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:

        async def one(messages: list[dict]) -> dict:
            async with gate:
                return await chat(client, url, messages, tokens, eos)

        t0 = time.perf_counter()
        outs = await asyncio.gather(*(one(m) for m in chats))
    return {"outs": outs, **summary(outs, time.perf_counter() - t0)}


def shared(system: str, n: int) -> list[list[dict]]:
    return [
        [{"role": "system", "content": system},
         {"role": "user", "content": f"Tell me about {serving.TOPICS[i % 16]}."}]
        for i in range(n)
    ]  # fmt: skip


async def conversations(url: str, cfg: dict, tokens: int, eos: int) -> dict:
    """`convs` chats, each turn of all of them before the next turn of any."""
    histories = [
        [{"role": "system", "content": f"You are storyteller number {i + 1}."}]
        for i in range(cfg["convs"])
    ]
    turns = []
    for t in range(cfg["turns"]):
        for i, h in enumerate(histories):
            h.append({"role": "user", "content": f"Continue story {i + 1}, part {t + 1}."})
        r = await burst(url, histories, tokens, eos, cfg["window"])
        for h, o in zip(histories, r.pop("outs"), strict=True):
            h.append({"role": "assistant", "content": o["text"] or "..."})
        turns.append(r)
        hit = "-" if r["cache_hit"] is None else f"{100 * r['cache_hit']:.0f}%"
        print(f"  conversations, turn {t + 1}: {r['wall_s']:.0f} s, TTFT p50 "
              f"{r['ttft_p50_ms']:.0f} ms, cache hits {hit}", file=sys.stderr)  # fmt: skip
    return {"turns": turns}


def run_server(url: str, cfg: dict, vocab, tokens: int, eos: int) -> dict:
    res: dict = {}
    asyncio.run(serving.run_level(url, MODEL, 1, 8, eos))  # warm-up
    if "conversations" in cfg["rows"] and "shared" not in cfg["rows"]:
        res["conversations"] = asyncio.run(conversations(url, cfg, tokens, eos))
        return res
    res["plain"] = []
    for n in cfg["levels"]:
        level = asyncio.run(serving.run_level(url, MODEL, n, tokens, eos))
        level.pop("requests")
        res["plain"].append(level)
    system = filler(vocab, cfg["prefix"], "policy")
    n = cfg["shared"]
    cold = f"[session {uuid.uuid4().hex}]\n{system}"
    res["shared_cold"] = asyncio.run(burst(url, shared(cold, n), tokens, eos, n))
    warm = f"[session {uuid.uuid4().hex}]\n{system}"
    asyncio.run(burst(url, shared(warm, 1), tokens, eos, 1))  # the prompt seen once
    res["shared_warm"] = asyncio.run(burst(url, shared(warm, n), tokens, eos, n))
    res["conversations"] = asyncio.run(conversations(url, cfg, tokens, eos))
    for r in (res["shared_cold"], res["shared_warm"]):
        r.pop("outs")
    print("  done", file=sys.stderr)
    return res


def fmt_row(name: str, a: dict, b: dict) -> str:
    ratio = a["tok_s"] / b["tok_s"] if b["tok_s"] else float("nan")
    return (
        f"| {name} | {a['tok_s']:.1f} | {b['tok_s']:.1f} | {ratio:.2f} | "
        f"{a['ttft_p50_ms']:.0f} / {a['ttft_p99_ms']:.0f} | "
        f"{b['ttft_p50_ms']:.0f} / {b['ttft_p99_ms']:.0f} | {a['failed']} / {b['failed']} |"
    )


def pct(x: float | None) -> str:
    return "not reported" if x is None else f"{100 * x:.0f}%"


def markdown(r: dict) -> str:
    a, b, c = r["llmkit"], r["llama_server"], r["config"]
    lines = [
        f"{r['tokens']}-token streamed replies, {r['threads']} threads, {c['parallel']} slots "
        f"of {r['ctx']} tokens, {r['date']}. In-process `llama_cpp.Llama`: "
        f"**{r['in_process_tok_s']:.1f} tok/s** (one stream, the ceiling).",
        "",
        "| workload | llmkit tok/s | llama-server tok/s | llmkit / peer "
        "| TTFT p50 / p99 ms (llmkit) | TTFT p50 / p99 ms (peer) | failed (llmkit / peer) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for x, y in zip(a.get("plain", []), b.get("plain", []), strict=True):
        lines.append(fmt_row(f"plain, {x['concurrency']} stream(s)", x, y))
    n, p = c["shared"], c["prefix"]
    if "shared_cold" not in a:  # ``--rows conversations``: that row alone
        ta, tb = a["conversations"]["turns"], b["conversations"]["turns"]
        for i, (x, y) in enumerate(zip(ta, tb, strict=True)):
            lines.append(fmt_row(f"{c['convs']} conversations, turn {i + 1}", x, y))
        return "\n".join(lines)
    lines.append(fmt_row(f"{n} × {p}-token shared prompt, cold", a["shared_cold"],
                         b["shared_cold"]))  # fmt: skip
    lines.append(fmt_row(f"{n} × {p}-token shared prompt, warm", a["shared_warm"],
                         b["shared_warm"]))  # fmt: skip
    ta, tb = a["conversations"]["turns"], b["conversations"]["turns"]
    lines.append(fmt_row(f"{c['convs']} conversations, turn 1", ta[0], tb[0]))
    lines.append(fmt_row(f"{c['convs']} conversations, turn {c['turns']}", ta[-1], tb[-1]))

    def hits(turns: list[dict]) -> str:
        return ", ".join(pct(t["cache_hit"]) for t in turns)

    lines += [
        "",
        f"Conversations, TTFT p50 turn 1 → {c['turns']}: llmkit {ta[0]['ttft_p50_ms']:.0f} → "
        f"{ta[-1]['ttft_p50_ms']:.0f} ms; llama-server {tb[0]['ttft_p50_ms']:.0f} → "
        f"{tb[-1]['ttft_p50_ms']:.0f} ms.",
        f"Prompt tokens served from cache, by turn: llmkit {hits(ta)}; llama-server {hits(tb)}.",
        f"Shared prompt, cache hit cold / warm: llmkit {pct(a['shared_cold']['cache_hit'])} / "
        f"{pct(a['shared_warm']['cache_hit'])}; llama-server "
        f"{pct(b['shared_cold']['cache_hit'])} / {pct(b['shared_warm']['cache_hit'])}.",
        "",
        *(kv_memory.markdown(r["memory"]) if r["memory"] else []),
    ]
    return "\n".join(lines)


def main() -> None:
    import llama_cpp

    from llmkit.engines.llamacpp.model import default_threads
    from llmkit.models.bundled import bundled_model_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: everything scaled down")
    ap.add_argument("--ctx", type=int, help="tokens per slot (default 4096, quick 2048)")
    ap.add_argument("--tokens", type=int, help="tokens per reply (default 128, quick 16)")
    ap.add_argument("--parallel", type=int, default=16, help="slots on both servers")
    rows = "shared (with the plain chats), conversations, memory"
    ap.add_argument("--rows", default="shared,conversations,memory", help=f"which rows: {rows}")
    args = ap.parse_args()
    cfg = dict(QUICK if args.quick else FULL, parallel=args.parallel, rows=args.rows.split(","))
    ctx = args.ctx or (2048 if args.quick else 4096)
    tokens = args.tokens or (16 if args.quick else 128)
    threads = default_threads()
    path = bundled_model_path()
    vocab = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    eos = vocab.token_eos()
    binary = llama_server.build(lambda line: print(line, file=sys.stderr))

    print("in-process ceiling", file=sys.stderr)
    ceiling = serving.in_process(path, tokens if args.quick else 256, threads)
    port = serving.free_port()
    print("llmkit serve", file=sys.stderr)
    proc = serving.start(
        [sys.executable, "-m", "llmkit", "serve", "--port", str(port), "--threads",
         str(threads), "--parallel", str(args.parallel), "--max-model-len", str(ctx)],
        f"http://127.0.0.1:{port}", "/health",
    )  # fmt: skip
    try:
        ours = run_server(f"http://127.0.0.1:{port}", cfg, vocab, tokens, eos)
    finally:
        serving.stop(proc)
    print(f"llama-server ({binary})", file=sys.stderr)
    peer_args = ["-t", str(threads), "--parallel", str(args.parallel), "-c",
                 str(ctx * args.parallel), "--alias", MODEL]  # fmt: skip
    with llama_server.serve(path, serving.free_port(), peer_args) as url:
        peer = run_server(url, cfg, vocab, tokens, eos)
    memory = None
    if "memory" in cfg["rows"]:
        memory = kv_memory.measure(burst, filler, vocab, cfg, path, threads, tokens, eos)

    report = {
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
        "threads": threads,
        "ctx": ctx,
        "tokens": tokens,
        "config": cfg,
        "llama_server_args": peer_args,
        "in_process_tok_s": ceiling,
        "llmkit": ours,
        "llama_server": peer,
        "memory": memory,
    }
    serving.save(report, "prefix.json")
    print(markdown(report))


if __name__ == "__main__":
    main()
