"""What a LoRA adapter served as its own model costs: memory per extra context, and
throughput when the base and an adapter run at once against the base alone (the
peer: the same server, the same GGUF, the same run).

    .venv/bin/python bench/lora.py [--base BASE.gguf --adapter LORA.gguf] [--streams 4]
                                   [--tokens 64]

Without ``--base``/``--adapter`` it makes a SmolLM2-135M-shaped Llama with random
weights (f16) and a rank-16 PEFT LoRA on its q, k, v, o projections, converted by
llama.cpp's converters (as tests/test_lora.py does, larger).

1. Memory: ``llmkit serve`` with the base alone, then with 1 and 2 adapters
   (``--lora-modules``); after one request to every model, the server's RSS. The
   difference per adapter is its context: KV pool, compute buffers, the adapter's
   tensors (the weights are loaded once, shared).
2. Throughput: ``--streams`` greedy completions of ``--tokens`` tokens at once, all
   to the base; then half to the base and half to the adapter, at once. llama.cpp
   applies an adapter per context, so the two halves run in two contexts, each
   batching its own sequences in its own decode loop (two threads, each with
   ``--threads``): the base alone batches all of them in one.

Prints a Markdown table; the raw per-request results go to bench/results/lora.json.
Failures are recorded, not raised.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from serving import free_port, save, start, stop  # bench/serving.py: the same way to start

PROMPT = list(range(1000, 1064))


@dataclass
class RequestOutput:
    model: str
    success: bool = False
    error: str = ""
    latency: float = 0.0
    tokens: int = 0


def complete(url: str, model: str, tokens: int) -> RequestOutput:
    out = RequestOutput(model)
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
            "ignore_eos": True}  # fmt: skip
    t = time.perf_counter()
    try:
        r = httpx.post(url + "/v1/completions", json=body, timeout=600)
        out.latency = time.perf_counter() - t
        r.raise_for_status()
        out.tokens = r.json()["usage"]["completion_tokens"]
        out.success = True
    except (httpx.HTTPError, KeyError, ValueError) as e:
        out.error = f"{type(e).__name__}: {e}"
    return out


def make_models(tmp: Path) -> tuple[Path, Path]:
    """A SmolLM2-135M-shaped random Llama (f16 GGUF) and a LoRA for it (GGUF)."""
    import peft
    import torch
    import transformers

    from llmkit.models.bundled import bundled_model_path

    gguf = Path(bundled_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
        tie_word_embeddings=True, initializer_range=0.05,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).to(torch.float16).save_pretrained(tmp / "hf")
    tok.save_pretrained(tmp / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp / "hf", dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    lora = peft.LoraConfig(r=16, lora_alpha=32, target_modules=targets)
    tuned = peft.get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    tuned.save_pretrained(tmp / "peft")
    src = Path(sys.prefix) / "llama.cpp"
    for cmd in (
        [src / "convert_hf_to_gguf.py", tmp / "hf", "--outtype", "f16",
         "--outfile", tmp / "base.gguf"],
        [src / "convert_lora_to_gguf.py", tmp / "peft", "--base", tmp / "hf",
         "--outfile", tmp / "lora.gguf"],
    ):  # fmt: skip
        subprocess.run([sys.executable, *map(str, cmd)], check=True, capture_output=True)
    return tmp / "base.gguf", tmp / "lora.gguf"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def serve(base: Path, adapters: int, lora: Path, args: argparse.Namespace) -> tuple:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "llmkit", "serve", "--port", str(port), "--model", str(base),
           "--served-model-name", "base", "--max-model-len", str(args.max_model_len),
           "--parallel", str(args.streams), "--kv-host-cache", "0"]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    for i in range(adapters):
        cmd += ["--lora-modules", f"tuned{i}={lora}"]
    return start(cmd, url, "/health"), url


def at_once(url: str, models: list[str], tokens: int) -> tuple[list[RequestOutput], float]:
    t = time.perf_counter()
    with ThreadPoolExecutor(len(models)) as pool:
        outs = list(pool.map(lambda m: complete(url, m, tokens), models))
    return outs, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path)
    p.add_argument("--adapter", type=Path)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-model-len", type=int, default=512)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, lora = (args.base, args.adapter) if args.base else make_models(Path(tmp))
        report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "base": str(base),
                        "adapter": str(lora), "streams": args.streams, "tokens": args.tokens,
                        "memory": [], "runs": []}  # fmt: skip
        for n in (0, 1, 2):
            proc, url = serve(base, n, lora, args)
            try:
                for m in ["base", *(f"tuned{i}" for i in range(n))]:
                    complete(url, m, 4)  # loaded, its buffers touched
                report["memory"].append({"adapters": n, "rss_mib": rss_mib(proc.pid)})
                if n == 1:
                    for label, models in (
                        ("base alone", ["base"] * args.streams),
                        ("base + adapter", ["base", "tuned0"] * (args.streams // 2)),
                    ):
                        at_once(url, models, 4)  # warm
                        outs, wall = at_once(url, models, args.tokens)
                        done = sum(o.tokens for o in outs)
                        report["runs"].append({"label": label, "wall": wall, "tok_s": done / wall,
                                               "requests": [asdict(o) for o in outs]})  # fmt: skip
            finally:
                stop(proc)
    save(report, "lora")
    print(markdown(report))


def markdown(r: dict) -> str:
    mem = r["memory"]
    lines = [f"{r['streams']} streams x {r['tokens']} tokens, {r['date']}.", ""]
    lines += ["| adapters served | server RSS MiB | per extra adapter |", "|---|---|---|"]
    for m in mem:
        extra = (m["rss_mib"] - mem[0]["rss_mib"]) / m["adapters"] if m["adapters"] else 0
        lines.append(f"| {m['adapters']} | {m['rss_mib']:.0f} | {extra:.0f} |")
    lines += ["", "| run | tok/s | vs base alone |", "|---|---|---|"]
    alone = r["runs"][0]["tok_s"] if r["runs"] else 1
    for run in r["runs"]:
        lines.append(f"| {run['label']} | {run['tok_s']:.1f} | {run['tok_s'] / alone:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
