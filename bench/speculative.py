"""Speculative decoding: ``llmkit serve`` against llama.cpp's own ``llama-server``
(built from the pinned source by ``bench/llama_server.py``), same GGUF, same
threads, one server at a time, in the same run.

    .venv/bin/python bench/speculative.py [--model PATH] [--tokens 400] [--threads 2]
        [--rows copy,prose,off,concurrent] [--spec-types ngram-simple,ngram-map-k,...]

Rows (single stream unless said, greedy unless said):

- copy: copy-heavy requests (a code file to edit and return whole, a document
  to quote from, JSON filled from a given text): llmkit (speculation on, the
  default) against llama-server plain and with each ``--spec-type``;
- prose: free prose sampled at temperature 0.8 (drafts mostly fail): llmkit
  against llama-server plain;
- off: llmkit with speculation off for the request (``speculative: false``)
  against llama-server plain, on the copy and prose prompts;
- concurrent: 16 plain chats at once on llmkit, speculation on against off:
  after a warm-up round (so both find the chats' prompts cached), four rounds
  in the order on, off, off, on (neither gains from going second), averaged.

Decode speed is tokens per second from the first token to the last. Acceptance
(accepted / drafted) and tokens per verification step come from llmkit's
``/metrics`` (read before and after each request) and llama-server's
``timings``. Prints a Markdown table and writes the raw results to
bench/results/speculative.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_server

ROOT = Path(__file__).resolve().parent
MODEL = "bench"
#: llama-server's draft-free speculation types in the pinned build.
SPEC_TYPES = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")

CODE = "\n".join(
    f"def handler_{i}(request, store):\n"
    f"    item = store.get(request.id_{i})\n"
    f"    if item is None:\n"
    f"        return {{'status': 404, 'error': 'no item {i}'}}\n"
    f"    return {{'status': 200, 'item': item.to_dict()}}\n"
    for i in range(10)
)
DOC = " ".join(
    f"Section {i}. The committee met on day {i} and agreed that the budget for the "
    f"{['roads', 'schools', 'parks', 'libraries', 'clinics'][i % 5]} would rise by {i + 2} "
    "percent, after a long debate about the costs of maintenance and staff."
    for i in range(12)
)
PEOPLE = "; ".join(
    f"{n} was born in {1900 + 7 * i} in {c} and worked as a {j}"
    for i, (n, c, j) in enumerate(
        [
            ("Ada Moss", "Leeds", "chemist"),
            ("Bo Lind", "Malmo", "pilot"),
            ("Cy Varga", "Pecs", "teacher"),
            ("Di Ross", "Perth", "architect"),
            ("Ed Kahn", "Ulm", "baker"),
            ("Flo Diaz", "Cadiz", "judge"),
        ]
    )
)
# Each asks for what the bundled 135M model does do: return the file (it does not
# rename, but returns it whole), quote the sections, extend the JSON list.
COPY_PROMPTS = {
    "code edit": f"```python\n{CODE}```\n\nRewrite this file with every `store` renamed "
    "to `db`. Return the whole file.",
    "document quote": f"Here is a document:\n\n{DOC}\n\nQuote, word for word, every section "
    "that mentions schools or parks.",
    "JSON fill": '```json\n[\n  {"name": "Ada Moss", "born": 1900, "city": "Leeds", '
    '"job": "chemist"}\n]\n```\n\nAdd the other people of this text to the JSON list '
    f"above and return the whole list: {PEOPLE}.",
}
PROSE = "Write a long story about a lighthouse keeper who finds a message in a bottle."
CHATS = [f"Tell me about {t}." for t in ("rivers", "bread", "the moon", "trains")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, content: str, tokens: int, extra: dict) -> dict:
    """One streamed chat; times its content chunks, counts its tokens."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    stamps: list[float] = []
    usage: dict = {}
    timings: dict = {}
    t0 = time.perf_counter()
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if any((c.get("delta") or {}).get("content") for c in event.get("choices", [])):
                    stamps.append(time.perf_counter())
                usage = event.get("usage") or usage
                timings = event.get("timings") or timings
    except httpx.HTTPError as e:
        return {"error": str(e)}
    n = usage.get("completion_tokens", len(stamps))
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return {
        "tokens": n,
        "ttft_s": stamps[0] - t0 if stamps else None,
        "decode_tok_s": (n - 1) / span if span else None,
        "draft_n": timings.get("draft_n"),
        "draft_accepted": timings.get("draft_n_accepted"),
    }


def spec_counts(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    found = re.findall(r"llmkit_speculative_(\w+)_total\{[^}]*\} (\S+)", text)
    return {k: float(v) for k, v in found}


def llmkit_row(url: str, prompts: dict[str, str], tokens: int, extra: dict) -> dict:
    """Each request alone, with the drafting counts ``/metrics`` moved by during it."""
    runs = {}
    for name, p in prompts.items():
        before = spec_counts(url)
        runs[name] = request(url, p, tokens, extra)
        after = spec_counts(url)
        runs[name]["spec"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {"runs": runs}


async def concurrent(url: str, tokens: int, extra: dict, n: int = 16) -> dict:
    async def one(i: int) -> int:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": CHATS[i % len(CHATS)]}],
            "max_tokens": tokens,
            "temperature": 0,
            "ignore_eos": True,
            **extra,
        }
        async with httpx.AsyncClient(timeout=900) as c:
            r = await c.post(url + "/v1/chat/completions", json=body)
            return r.json()["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    done = await asyncio.gather(*(one(i) for i in range(n)))
    return {"tokens": sum(done), "aggregate_tok_s": sum(done) / (time.perf_counter() - t0)}


def concurrent_rows(url: str, tokens: int) -> dict:
    """Speculation on and off for 16 chats at once: a warm-up round, then on, off,
    off, on; each side's rounds averaged."""
    off = {"speculative": False}
    asyncio.run(concurrent(url, tokens, off))
    rounds: dict[str, list[dict]] = {"on": [], "off": []}
    for side in ("on", "off", "off", "on"):
        rounds[side].append(asyncio.run(concurrent(url, tokens, {} if side == "on" else off)))
    return {
        f"llmkit 16 {side}": {
            "tokens": runs[0]["tokens"],
            "aggregate_tok_s": sum(r["aggregate_tok_s"] for r in runs) / len(runs),
            "rounds": [r["aggregate_tok_s"] for r in runs],
        }
        for side, runs in rounds.items()
    }


def start_llmkit(model: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llmkit", "serve", "--model", model, "--served-model-name", MODEL,
           "--port", str(port), "--threads", str(threads), "--parallel", "16",
           "--max-model-len", "4096", "--metrics-public"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"llmkit serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("llmkit serve did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    from llmkit.models.bundled import bundled_model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=bundled_model_path())
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="copy,prose,off,concurrent")
    ap.add_argument("--spec-types", default=",".join(SPEC_TYPES))
    ap.add_argument("--concurrent-tokens", type=int, default=128)
    args = ap.parse_args()
    rows = set(args.rows.split(","))
    sampled = {"temperature": 0.8, "seed": 1, "ignore_eos": True}
    prose = {"prose": PROSE}
    report: dict = {"model": args.model, "tokens": args.tokens, "threads": args.threads}

    proc, url = start_llmkit(args.model, args.threads)
    try:
        request(url, "Hello", 8, {})  # warm-up
        if "copy" in rows:
            report["llmkit copy"] = llmkit_row(url, COPY_PROMPTS, args.tokens, {})
        if "prose" in rows:
            report["llmkit prose"] = llmkit_row(url, prose, args.tokens, sampled)
        if "off" in rows:
            off = {"speculative": False}
            report["llmkit off copy"] = llmkit_row(url, COPY_PROMPTS, args.tokens, off)
            report["llmkit off prose"] = llmkit_row(url, prose, args.tokens, {**sampled, **off})
        if "concurrent" in rows:
            report |= concurrent_rows(url, args.concurrent_tokens)
    finally:
        stop(proc)

    base = ["-t", str(args.threads), "-c", "4096", "-np", "1", "--alias", MODEL]
    kinds = [("plain", [])] + [(k, ["--spec-type", k]) for k in args.spec_types.split(",") if k]
    for kind, flags in kinds:
        if kind != "plain" and "copy" not in rows:
            continue
        with llama_server.serve(args.model, free_port(), [*base, *flags]) as lurl:
            request(lurl, "Hello", 8, {})
            runs = {n: request(lurl, p, args.tokens, {}) for n, p in COPY_PROMPTS.items()}
            if kind == "plain":
                runs |= {"prose": request(lurl, PROSE, args.tokens, sampled)}
            report[f"llama-server {kind}"] = {"runs": runs}

    print(markdown(report))
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "speculative.json").write_text(json.dumps(report, indent=2))


def _rate(row: dict | None, name: str) -> float | None:
    r = (row or {}).get("runs", {}).get(name) or {}
    return r.get("decode_tok_s")


def _acceptance(row: dict, name: str) -> str:
    r = row["runs"].get(name) or {}
    spec = r.get("spec")
    if spec is not None:  # llmkit
        d, a, s = spec.get("drafted", 0), spec.get("accepted", 0), spec.get("verify_steps", 0)
        if not d:
            return "- | -"
        return f"{a / d:.0%} | {(a + s) / s:.2f}"
    d, a = r.get("draft_n"), r.get("draft_accepted")
    return f"{a / d:.0%} | -" if d else "- | -"


def markdown(r: dict) -> str:
    out = [
        "| row | request | tok/s | vs llama-server plain | vs its best n-gram "
        "| acceptance | tokens / verify step |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    plain = r.get("llama-server plain")
    ngram = [v for k, v in r.items() if k.startswith("llama-server ngram")]
    for key, row in r.items():
        if not isinstance(row, dict) or "runs" not in row:
            continue
        for name in row["runs"]:
            rate = _rate(row, name)
            if rate is None:
                continue
            p = _rate(plain, name)
            best = max((x for x in (_rate(g, name) for g in ngram) if x), default=None)
            vs_plain = f"{rate / p:.2f}x" if p else "-"
            speculating = key.startswith("llmkit") and " off " not in f" {key} "
            vs_best = f"{rate / best:.2f}x" if best and speculating else "-"
            accepted = _acceptance(row, name)
            out.append(f"| {key} | {name} | {rate:.1f} | {vs_plain} | {vs_best} | {accepted} |")
    on, off = r.get("llmkit 16 on"), r.get("llmkit 16 off")
    if on and off:
        ratio = on["aggregate_tok_s"] / off["aggregate_tok_s"]
        out.append(
            f"\n16 concurrent chats: {on['aggregate_tok_s']:.1f} tok/s with speculation, "
            f"{off['aggregate_tok_s']:.1f} without: {ratio:.2f}x"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
