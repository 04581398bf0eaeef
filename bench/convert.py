"""Conversion and quantization cost: ``llmkit create --quantize q4_K_M`` on Llama-shaped
models with random weights, against llama.cpp's converter and quantizer run bare
(the converter script from the shell, the bindings' ``llama_model_quantize`` in a
plain child), same machine, same run.

    .venv/bin/python bench/convert.py [--shapes 135m,0.5b] [--type q4_K_M]

Shapes: ``135m`` is SmolLM2-135M's (hidden 576, 30 layers, 9 heads / 3 KV, FFN 1536,
vocabulary 49,152, tied embeddings); ``0.5b`` is Qwen2-0.5B's sizes as a Llama (hidden
896, 24 layers, 14 heads / 2 KV, FFN 4864, vocabulary 151,936 padded from the
SmolLM2 tokenizer, tied): ~494M parameters. The weights are saved in bf16, as most
Hugging Face checkpoints are. For each: wall time and peak RSS of the converter
child and of the quantizer child, llmkit's and the bare peer's, and the ratio.
Prints a Markdown table; the raw results go to bench/results/convert.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import save  # bench/serving.py: results under bench/results/

SHAPES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                 num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936),
}  # fmt: skip


def make_model(out: Path, shape: dict) -> int:
    """A random-weight Llama of ``shape`` with the bundled model's tokenizer."""
    import torch
    import transformers

    from llmkit.models.bundled import bundled_model_path

    gguf = Path(bundled_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    cfg = transformers.LlamaConfig(
        **shape, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def bare(cmd: list[str]) -> dict:
    """A child run as a user would from the shell: its time and peak RSS."""
    from llmkit.models.watch import peak_rss

    t = time.perf_counter()
    with tempfile.TemporaryFile() as log:  # a pipe would fill up and stall the child
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        peak = 0
        while True:  # VmHWM as it runs: ru_maxrss would carry over this process's peak
            peak = max(peak, peak_rss(proc.pid))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        err = log.read().decode(errors="replace")[-500:]
    return {"seconds": time.perf_counter() - t, "peak_rss": peak,
            "ok": proc.returncode == 0, "error": "" if proc.returncode == 0 else err}  # fmt: skip


def run_shape(name: str, qtype: str, tmp: Path) -> dict:
    from llmkit.models.catalog import Catalog
    from llmkit.models.convert import make_model as create
    from llmkit.models.llama_source import llama_cpp_dir

    src = tmp / f"src-{name}"
    n_params = make_model(src, SHAPES[name])
    result: dict = {"shape": name, "params": n_params, "type": qtype}
    try:
        entry, stats = create(Catalog(tmp / "models"), f"bench-{name}", src, qtype)
        assert stats.convert is not None and stats.quantize is not None
        result["llmkit"] = {
            "convert_s": stats.convert.seconds, "convert_rss": stats.convert.peak_rss,
            "quantize_s": stats.quantize.seconds, "quantize_rss": stats.quantize.peak_rss,
            "size": entry.size_on_disk(),
        }  # fmt: skip
    except Exception as e:  # recorded, not raised: the other shape still runs
        result["llmkit"] = {"error": str(e)}
    f16 = tmp / f"bare-{name}-f16.gguf"
    conv = bare([sys.executable, str(llama_cpp_dir() / "convert_hf_to_gguf.py"), str(src),
                 "--outfile", str(f16), "--outtype", "f16"])  # fmt: skip
    code = (
        "import sys, llama_cpp\n"
        "p = llama_cpp.llama_model_quantize_default_params()\n"
        f"p.ftype = {_ftype(qtype)}\n"
        "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))"
    )
    quant = bare([sys.executable, "-c", code, str(f16), str(tmp / f"bare-{name}.gguf")])
    result["bare"] = {"convert_s": conv["seconds"], "convert_rss": conv["peak_rss"],
                      "quantize_s": quant["seconds"], "quantize_rss": quant["peak_rss"],
                      "errors": [r["error"] for r in (conv, quant) if not r["ok"]]}  # fmt: skip
    return result


def _ftype(qtype: str) -> int:
    from llmkit.models.quantize import QUANT_TYPES, quant_type

    return QUANT_TYPES[quant_type(qtype)][0]


def markdown(results: list[dict]) -> str:
    mib = 1024 * 1024
    lines = [
        "| shape | params | stage | llmkit s | bare s | ratio | llmkit peak RSS | bare peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mine, peer = r["llmkit"], r["bare"]
        if "error" in mine:
            lines.append(f"| {r['shape']} | {r['params']:,} | error: {mine['error'][:80]} |")
            continue
        for stage in ("convert", "quantize"):
            a, b = mine[f"{stage}_s"], peer[f"{stage}_s"]
            lines.append(
                f"| {r['shape']} | {r['params'] / 1e6:.0f}M | {stage} "
                f"{'' if stage == 'convert' else r['type']} | {a:.1f} | {b:.1f} | {a / b:.2f} | "
                f"{mine[f'{stage}_rss'] / mib:.0f} MiB | {peer[f'{stage}_rss'] / mib:.0f} MiB |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="135m,0.5b")
    parser.add_argument("--type", default="q4_K_M")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="llmkit-bench-convert-") as tmp:
        for name in args.shapes.split(","):
            results.append(run_shape(name.strip(), args.type, Path(tmp)))
    save({"results": results}, "convert.json")
    print(markdown(results))


if __name__ == "__main__":
    main()
