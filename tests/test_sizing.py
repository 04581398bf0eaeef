"""Memory sizing against figures worked out by hand, the ``mem`` command, the fit
check before ``serve``, and the bundled model's estimate against the memory a
real server takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.models.fit import LLAMACPP_KV_BYTES, Budget, Plan, estimate_for, judge
from llmkit.models.metadata import facts_from_config, read_gguf
from llmkit.models.sizing import (
    GIB,
    count_params,
    default_context,
    gguf_kv_bytes_per_token,
    kv_bytes_per_token,
)
from tests.conftest import start_server

# Published configs (config.json on the hubs).
QWEN2_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
LLAMA3_70B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMKIT_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("LLMKIT_MEMORY_GIB", raising=False)


@pytest.mark.parametrize(
    ("config", "params"),
    [
        # The totals the model cards publish.
        (QWEN2_7B, 7_615_616_512),
        (LLAMA3_70B, 70_553_706_496),
    ],
)
def test_parameters_from_config(config, params):
    assert facts_from_config(config).n_params == params


def test_parameters_of_the_bundled_model_counted_two_ways(bundled_path):
    # SmolLM2-135M: 30 layers, hidden 576, 9 heads, 3 KV heads, MLP 1536, vocab 49152, tied.
    formula = count_params(
        n_layers=30,
        hidden_size=576,
        n_heads=9,
        n_kv_heads=3,
        vocab_size=49152,
        intermediate_size=1536,
        tied_embeddings=True,
    )
    assert formula == read_gguf(Path(bundled_path)).n_params == 134_515_008


# Qwen2-7B-Instruct, worked by hand:
#   weights   7,615,616,512 x 4 / 2 / 0.5 bytes
#   KV/token  2 (K,V) x 28 layers x 4 KV heads x 128 dims x 4 (float32) or 2 bytes
#   overhead  0.75 GiB runtime + 2048 tokens x (2 x 18944 + 4 x 3584) x 4 or 2 bytes
#             + 152064 x 4 bytes of logits
@pytest.mark.parametrize(
    ("dtype", "context", "weights", "kv_per_token", "kv", "overhead"),
    [
        ("float32", 2048, 30_462_466_048, 114_688, 234_881_024, 1_233_733_632),
        ("float32", 32768, 30_462_466_048, 114_688, 3_758_096_384, 1_233_733_632),
        ("float16", 2048, 15_231_233_024, 57_344, 117_440_512, 1_019_824_128),
        ("float16", 32768, 15_231_233_024, 57_344, 1_879_048_192, 1_019_824_128),
        ("int4", 2048, 3_807_808_256, 57_344, 117_440_512, 1_019_824_128),
        ("int4", 32768, 3_807_808_256, 57_344, 1_879_048_192, 1_019_824_128),
    ],
)
def test_qwen2_7b(dtype, context, weights, kv_per_token, kv, overhead):
    est = estimate_for(facts_from_config(QWEN2_7B), Plan(dtype=dtype, context=context))
    assert est.weights_bytes == weights
    assert est.kv_bytes_per_token == kv_per_token
    assert est.kv_bytes == kv
    assert est.overhead_bytes == overhead
    assert est.per_device_bytes == weights + kv + overhead
    if dtype == "float32":  # "a 7B model in float32 needs about 26 GiB before any KV cache"
        assert 26 <= weights / GIB < 29


# Llama-3-70B at float16, its own 8192 context, one sequence, split over tp devices:
#   weights   70,553,706,496 x 2 / tp
#   KV/token  2 x 80 layers x (8 KV heads / tp, at least 1) x 128 dims x 2 bytes
#   overhead  0.75 GiB + 2048 x (2 x 28672 / tp + 4 x 8192) x 2 + 128256 x 4
@pytest.mark.parametrize(
    ("tp", "weights", "kv_heads", "kv_per_token", "overhead", "total"),
    [
        (1, 141_107_412_992, 8, 327_680, 1_174_918_144, 144_966_685_696),
        (2, 70_553_706_496, 4, 163_840, 1_057_477_632, 72_953_361_408),
        (4, 35_276_853_248, 2, 81_920, 998_757_376, 36_946_699_264),
        (8, 17_638_426_624, 1, 40_960, 969_397_248, 18_943_368_192),
        # More devices than KV heads: each keeps a copy of one head.
        (16, 8_819_213_312, 1, 40_960, 954_717_184, 10_109_474_816),
    ],
)
def test_70b_grouped_query_attention_across_devices(
    tp, weights, kv_heads, kv_per_token, overhead, total
):
    est = estimate_for(facts_from_config(LLAMA3_70B), Plan(dtype="float16", tp=tp))
    assert est.context == 8192
    assert est.weights_per_device == weights
    assert est.kv_heads_per_device == kv_heads
    assert est.kv_bytes_per_token_per_device == kv_per_token
    assert est.kv_per_device == kv_per_token * 8192
    assert est.overhead_bytes == overhead
    assert est.per_device_bytes == total
    # Without GQA (64 KV heads) the cache would be 8 times as large.
    assert kv_bytes_per_token(80, 64, 128) == 8 * est.kv_bytes_per_token


@pytest.mark.parametrize(
    ("config", "plan", "budget_gib", "fits", "suggestions"),
    [
        (QWEN2_7B, Plan(dtype="float16"), 24, True, []),
        (
            QWEN2_7B,
            Plan(dtype="float16"),
            16,
            False,
            [
                "--max-model-len 15360 (15.96 GiB)",
                "--dtype int8, i.e. 8-bit weights as in a GPTQ or AWQ build (9.79 GiB)",
                "--tp 2 (8.85 GiB per device)",
            ],
        ),
        (
            LLAMA3_70B,
            Plan(dtype="float16"),
            80,
            False,
            [
                "--dtype int8, i.e. 8-bit weights as in a GPTQ or AWQ build (69.30 GiB)",
                "--tp 2 (67.94 GiB per device)",
            ],
        ),
        (LLAMA3_70B, Plan(dtype="float16", tp=2), 80, True, []),
        (
            LLAMA3_70B,
            Plan(dtype="float16"),
            8,
            False,
            ["none of the usual changes is enough: the weights alone take 131.42 GiB per device"],
        ),
    ],
)
def test_verdict_and_what_to_change(config, plan, budget_gib, fits, suggestions):
    v = judge(facts_from_config(config), plan, Budget(budget_gib * GIB, "test"))
    assert (v.fits, v.suggestions) == (fits, suggestions)


def test_the_bundled_gguf_is_sized_from_its_real_quantisation(bundled_path):
    facts = read_gguf(Path(bundled_path))
    est = estimate_for(facts, Plan(context=8192, sequences=4))
    assert est.weight_format == "Q4_1"
    assert est.weights_bytes == 96_576_768  # the tensors as stored (Q4_1, Q8_0 embeddings, F32)
    assert est.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2  # f16 K and V, 3 KV heads of 64
    assert est.kv_bytes == 23_040 * 8192 * 4
    pool = estimate_for(facts, Plan(context=8192, sequences=4, kv_tokens=10_000))
    assert pool.kv_bytes == 23_040 * 10_000  # a shared pool counts its own size
    # Tokenizer tables 49152 x 700 + compute 512 x (3 x 576 + 2 x 1536) x 4 + 4 x 49152 x 4 logits
    assert est.overhead_bytes == 34_406_400 + 9_830_400 + 786_432


def test_header_walk_agrees_with_gguf_reader(bundled_path):
    """read_gguf skips over the vocabulary; llama.cpp's own reader is the reference."""
    import gguf

    facts = read_gguf(Path(bundled_path))
    reader = gguf.GGUFReader(bundled_path)

    def field(key):
        return reader.fields[key].contents()

    assert facts.n_params == sum(int(t.n_elements) for t in reader.tensors)
    assert facts.weights_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert (facts.n_layers, facts.n_heads, facts.n_kv_heads, facts.context_length) == (
        field("llama.block_count"),
        field("llama.attention.head_count"),
        field("llama.attention.head_count_kv"),
        field("llama.context_length"),
    )
    assert facts.vocab_size == len(reader.fields["tokenizer.ggml.tokens"].data)
    # The engine's own helpers, on the same header, give the same KV size.
    meta = {k: str(field(k)) for k in reader.fields if k.startswith("llama.")}
    meta["general.architecture"] = "llama"
    assert gguf_kv_bytes_per_token(meta, LLAMACPP_KV_BYTES) == (
        estimate_for(facts, Plan()).kv_bytes_per_token
    )
    assert default_context(8192, kv_per_token=23040, sequences=4, ram_bytes=16 * GIB) == 8192


MEM_BUNDLED = """\
SmolLM2-135M-Instruct: llama, 135M parameters (counted from the weights)
  weights  134,515,008 parameters x 0.718 bytes (Q4_1 as stored: 5.74 bits each)  =   92.10 MiB
  KV cache 2 (K, V) x 30 layers x 3 KV heads x 64 dims x 2 bytes                  =   22.50 KiB per token
           x 8192 tokens x 4 sequences                                            =  720.00 MiB
  overhead llama.cpp tokenizer tables, compute buffer, logits                     =   42.94 MiB
  total                                                                           =  855.04 MiB
does not fit: 855.04 MiB > 512.00 MiB (--gpu-memory 0.5)
to fit, try: --max-model-len 4096 (495.04 MiB); or --batch 2 (494.67 MiB)
"""  # noqa: E501


def test_mem_shows_its_arithmetic_and_what_to_change():
    result = CliRunner().invoke(
        cli,
        ["mem", "SmolLM2-135M-Instruct", "--batch", "4", "--gpu-memory", "0.5"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert result.output == MEM_BUNDLED


def test_mem_json():
    result = CliRunner().invoke(
        cli, ["mem", "SmolLM2-135M-Instruct", "--max-model-len", "2048", "--json"]
    )
    out = json.loads(result.output)
    assert out["model"] == "SmolLM2-135M-Instruct"
    assert out["facts"]["quantization"] == "Q4_1"
    assert out["estimate"]["kv_bytes"] == 23_040 * 2048
    assert out["estimate"]["per_device_bytes"] == 96_576_768 + 23_040 * 2048 + 44_433_408
    assert out["budget"]["source"] == "RAM available on this machine"
    assert out["fits"] is True


def test_mem_of_a_local_hugging_face_directory(tmp_path):
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text(json.dumps(QWEN2_7B))
    result = CliRunner().invoke(
        cli, ["mem", str(tmp_path / "qwen"), "--dtype", "float16", "--gpu-memory", "24"]
    )
    lines = result.output.splitlines()
    assert lines[0].endswith("qwen: qwen2, 7.6B parameters (estimated from config.json)")
    assert "7,615,616,512 parameters x 2 bytes (float16)" in lines[1]
    assert lines[1].endswith("=   14.19 GiB")
    assert lines[2].endswith("=   56.00 KiB per token")
    assert lines[3].endswith("=    1.75 GiB") and "x 32768 tokens x 1 sequence" in lines[3]
    assert lines[6] == "fits: 16.88 GiB <= 24.00 GiB (--gpu-memory 24)"


def test_mem_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["mem", "./missing.gguf"])
    assert result.exit_code == 1
    assert result.output == "Error: No such file or directory: ./missing.gguf\n"


def test_serve_refuses_a_model_that_does_not_fit(tmp_path):
    """Before loading anything: the numbers and what to change, no traceback."""
    env = {"LLMKIT_HOME": str(tmp_path), "LLMKIT_MODELS": str(tmp_path / "m"),
           "LLMKIT_MEMORY_GIB": "0.5"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "llmkit", "serve", "--max-model-len", "8192", "--parallel", "4"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr == (
        "Error: SmolLM2-135M-Instruct needs 855.04 MiB (weights 92.10 MiB + KV cache 720.00 MiB "
        "for 8192 tokens x 4 sequences + overhead 42.94 MiB) but only 512.00 MiB is there "
        "(LLMKIT_MEMORY_GIB). Try: --max-model-len 4096 (495.04 MiB); or --parallel 2 "
        "(494.67 MiB).\n"
    )


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    "flags",
    [
        # KV cache dominates: the default 8192 tokens x 4 sequences (720 MiB of cache).
        ["--max-model-len", "8192", "--parallel", "4"],
        # Weights and overhead dominate: 512 tokens x 1 sequence (11 MiB of cache).
        ["--max-model-len", "512", "--parallel", "1"],
    ],
)
def test_bundled_estimate_is_within_a_quarter_of_measured_memory(tmp_path, flags):
    """What a real server holds for the model, against what ``mem`` says.

    Measured: the server's resident set after it loaded the model and answered one
    request (a forward pass pages in every weight of the mmap'd GGUF and touches
    the compute buffers), minus the resident set of a Python that imported the
    same server code but loaded no model (interpreter, FastAPI, uvicorn, llama.cpp's
    library). The difference is what the model costs, which is what the estimate
    claims to be."""
    baseline = subprocess.run(
        [sys.executable, "-c", "import llmkit.cli.main, llmkit.serving.server, os\n"
         "print(open(f'/proc/{os.getpid()}/status').read())"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    base = next(int(x.split()[1]) * 1024 for x in baseline.splitlines() if x.startswith("VmRSS"))
    server = start_server(tmp_path, *flags)
    try:
        r = httpx.post(
            server.v1 + "/chat/completions",
            json={"model": "SmolLM2-135M-Instruct", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "Name three colours."}]},
            timeout=60,
        )  # fmt: skip
        assert r.status_code == 200
        measured = _rss(server.proc.pid) - base
    finally:
        server.stop()
    args = ["mem", "SmolLM2-135M-Instruct", "--json", "--max-model-len", flags[1]]
    out = CliRunner().invoke(cli, [*args, "--batch", flags[3]]).output
    estimate = json.loads(out)["estimate"]["per_device_bytes"]
    assert abs(estimate - measured) <= 0.25 * measured, (estimate, measured)
