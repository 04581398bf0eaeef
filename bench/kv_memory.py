"""The memory row of ``prefix.py``: how many ~2,000-token conversations each server
decodes at once, without a failure, in the same KV-cache memory.

The memory is llama-server's ``-c C`` (16-bit K and V: 2 bytes a value). Its
slots split that context evenly, so a conversation fits only in a slot of at
least its length: at most ``C // CONV_CTX`` slots (``--parallel``) serve it;
more slots are too short and fail it. llmkit gets the same cells, the same bytes,
as one pool (``--kv-cache-size C``), ``--max-model-len CONV_CTX`` and more
sequences than can fit, so memory alone decides how many run. The
conversations share a system prompt, as an application's do, then differ.

"Decoded at once" is the most requests between their first and last token at
any moment, seen from the client.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import llama_server
import serving

#: Context per conversation: a ~2,000-token conversation and a little room.
CONV_CTX = 2048
#: The chat template's tokens around a system and a user message and the reply's start.
TEMPLATE = 20


def peak(outs: list[dict]) -> int:
    """The most requests decoding at once: between their first and last token."""
    events = sorted(
        [(o["first_at"], 1) for o in outs if o["ok"]] + [(o["end_at"], -1) for o in outs if o["ok"]]
    )
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def conversations(prefix_text, filler, vocab, cfg: dict, tokens: int) -> list[list[dict]]:
    """``mem_n`` conversations of at most ``conv`` tokens with the reply: the system
    prompt (the salt, then ~``mem_prefix`` tokens) shared, then each one's own text."""
    system = f"{prefix_text}\n" + filler(vocab, cfg["mem_prefix"], "memory-policy")
    own = cfg["conv"] - tokens - TEMPLATE - len(vocab.tokenize(system.encode(), add_bos=False))

    def user(i: int) -> str:  # cut to its budget: the filler overshoots by up to a rule
        ids = vocab.tokenize(filler(vocab, own, f"conv-{i}").encode(), add_bos=False)
        return vocab.detokenize(ids[: own - 2]).decode("utf-8", errors="ignore")

    return [
        [{"role": "system", "content": system}, {"role": "user", "content": user(i)}]
        for i in range(cfg["mem_n"])
    ]


def row(burst, url: str, chats: list[list[dict]], tokens: int, eos: int) -> dict:
    r = asyncio.run(burst(url, chats, tokens, eos, len(chats)))
    outs = r.pop("outs")
    return r | {"decoded_at_once": peak(outs)}


def measure(burst, filler, vocab, cfg: dict, path: str, threads: int, tokens: int, eos: int):
    """Both servers at llama-server's ``-c cfg['mem_c']``: its best --parallel and one
    with twice the slots; llmkit with the same bytes as a pool."""
    c = cfg["mem_c"]
    chats = conversations(f"[session {uuid.uuid4().hex}]", filler, vocab, cfg, tokens)
    out: dict = {"c": c, "conversations": len(chats), "conv_tokens": cfg["conv"]}
    for slots in (c // CONV_CTX, 2 * (c // CONV_CTX)):
        print(f"memory: llama-server -c {c} --parallel {slots}", file=sys.stderr)
        args = ["-t", str(threads), "--parallel", str(slots), "-c", str(c), "--alias", "m"]
        with llama_server.serve(path, serving.free_port(), args) as url:
            out[f"llama_server_parallel_{slots}"] = row(burst, url, chats, tokens, eos)
    cells = c  # f16 cells on both (llmkit's attention kernel in)
    port = serving.free_port()
    print(f"memory: llmkit --kv-cache-size {cells}", file=sys.stderr)
    proc = serving.start(
        [sys.executable, "-m", "llmkit", "serve", "--port", str(port), "--threads", str(threads),
         "--parallel", str(len(chats)), "--max-model-len", str(CONV_CTX),
         "--kv-cache-size", str(cells)],
        f"http://127.0.0.1:{port}", "/health",
    )  # fmt: skip
    try:
        out["llmkit"] = row(burst, f"http://127.0.0.1:{port}", chats, tokens, eos)
    finally:
        serving.stop(proc)
    out["llmkit"]["kv_cache_size"] = cells
    return out


def markdown(m: dict) -> list[str]:
    peers = {k: v for k, v in m.items() if k.startswith("llama_server")}
    best = max((v["decoded_at_once"] for v in peers.values() if not v["failed"]), default=0)
    ours = m["llmkit"]
    lines = [
        f"Memory: {m['conversations']} conversations of ~{m['conv_tokens']} tokens sharing a "
        f"system prompt, all at once, in llama-server's `-c {m['c']}` of 16-bit KV memory "
        f"(llmkit: one pool of the same {ours['kv_cache_size']} cells).",
        "",
        "| server | decoded at once | failed | tok/s |",
        "|---|---:|---:|---:|",
    ]
    for k, v in [*peers.items(), ("llmkit", ours)]:
        lines.append(f"| {k} | {v['decoded_at_once']} | {v['failed']} | {v['tok_s']:.1f} |")
    ratio = ours["decoded_at_once"] / best if best and not ours["failed"] else float("nan")
    lines += ["", f"llmkit / llama-server's best without a failure: {ratio:.2f}"]
    return lines


def main() -> None:
    """The memory row alone: ``python bench/kv_memory.py [--quick]``."""
    import argparse
    import time

    import llama_cpp
    import prefix

    from llmkit.engines.llamacpp.model import default_threads
    from llmkit.models.bundled import bundled_model_path

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cfg = prefix.QUICK if args.quick else prefix.FULL
    tokens = 16 if args.quick else 128
    path = bundled_model_path()
    vocab = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    llama_server.build(lambda line: print(line, file=sys.stderr))
    m = measure(prefix.burst, prefix.filler, vocab, cfg, path, default_threads(), tokens,
                vocab.token_eos())  # fmt: skip
    serving.save({"date": time.strftime("%Y-%m-%d"), "memory": m}, "kv_memory.json")
    print("\n".join(markdown(m)))


if __name__ == "__main__":
    main()
