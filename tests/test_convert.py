"""Safetensors to GGUF: ``llmkit create --from``, ``/api/create`` with ``files`` and
``quantize`` (the ``ollama`` client), and ``llmkit pull --quantize`` from the stand-in
hub, held to transformers running the same weights.

The model is made here: a tiny Llama-architecture causal LM with random weights
(hidden 256 and FFN 512, so that the K-quants' 256-wide blocks apply and q4_K_M is
really q4_K_M, not its fallback), saved in f16 so the converted F16 GGUF holds exactly
the weights transformers runs. Its tokenizer is the bundled model's (SmolLM2),
rebuilt from the bundled GGUF by transformers' GGUF loader: no download, and the
converter has to recognise a real tokenizer (its pre-tokenizer hash) as it would for
a real SmolLM2 fine-tune.

Tolerances, from measurements of this model (flat distributions: entropy ~9.5 nats):
- F16: next-token log-probabilities from llmkit's ``/v1/completions`` (its top 5,
  the most that endpoint gives) within 0.05 of transformers' (measured max 0.022 over
  the whole vocabulary), and greedy text equal.
- Q8_0 / Q4_K_M: mean KL(transformers || GGUF) of the next-token distributions over 32
  positions below 0.01 / 0.35 nats (measured 0.003 / 0.18; random Gaussian weights
  quantize worse than trained ones). The full distribution is needed for a KL, and the
  API gives the top few only, so these load the catalog's GGUF with llama_cpp directly;
  as a check that the bound means something, a model with other random weights is
  over 5x the Q4_K_M bound from the reference.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest

from tests.conftest import Server, start_server, until
from tests.standin_hub import StandinHub
from tests.tiny_models import LLAMA_IDS, make_llama, reference_logprobs

IDS = LLAMA_IDS  # a prompt as token ids: no tokenizer differences to argue
F16_TOL = 0.05
KL_BOUND = {"Q8_0": 0.01, "Q4_K_M": 0.35}


def gguf_logprobs(path: Path, ids: list[int]) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=64, n_threads=1, verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def mean_kl(ref: np.ndarray, got: np.ndarray) -> float:
    return float((np.exp(ref) * (ref - got)).sum(-1).mean())


@pytest.fixture(scope="module")
def tiny(tiny_llama: Path) -> Path:
    """The tiny Llama (made once a session, shared with the LoRA tests: read only)."""
    return tiny_llama


@pytest.fixture(scope="module")
def ref(tiny_llama_ref: np.ndarray) -> np.ndarray:
    return tiny_llama_ref


@pytest.fixture(scope="module")
def hub(tiny: Path):
    files = {p.name: p.read_bytes() for p in tiny.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"the same weights, pickled: never fetched for a conversion"
    with StandinHub("hf", {"org/tiny-llama": files}) as h:
        yield h


@pytest.fixture(scope="module")
def env(tmp_path_factory, hub) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("convert")
    return {
        "LLMKIT_MODELS": str(tmp / "models"),
        "LLMKIT_HOME": str(tmp / "home"),
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp / "hf"),
        "LLMKIT_SOURCES": "hf",
    }


@pytest.fixture(scope="module")
def srv(tmp_path_factory, env) -> Server:
    s = start_server(tmp_path_factory.mktemp("srv"), "--served-model-name", "smol", env=env)
    yield s
    s.stop()


def llmkit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmkit", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def leftovers(env: dict[str, str]) -> list[str]:
    models = Path(env["LLMKIT_MODELS"])
    return sorted(p.name for p in models.glob(".creating-*")) + sorted(
        p.name for p in models.glob(".staging-*")
    )


def catalog_names(env: dict[str, str]) -> dict[str, dict]:
    out = llmkit(env, "list", "--json")
    assert out.returncode == 0, out.stderr
    return {row["name"]: row for row in json.loads(out.stdout)}


@pytest.fixture(scope="module")
def f16(env, tiny) -> subprocess.CompletedProcess:
    """``llmkit create tiny-f16 --from DIR``, once for the tests that start from it."""
    return llmkit(env, "create", "tiny-f16", "--from", str(tiny))


def test_create_f16_matches_transformers(env, srv, tiny, ref, f16):
    out = f16
    assert out.returncode == 0, out.stderr
    assert "created tiny-f16" in out.stdout
    assert "converting model" in out.stderr  # the stage lines, off a terminal
    row = catalog_names(env)["tiny-f16"]
    assert (row["format"], row["quantization"]) == ("gguf", "F16")
    assert leftovers(env) == []

    client = srv.client()
    got = client.completions.create(
        model="tiny-f16", prompt=IDS, max_tokens=1, temperature=0, logprobs=5
    )
    top = got.choices[0].logprobs.top_logprobs[0]
    assert len(top) == 5
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    last = ref[-1]
    text_of = {i: tok.decode([i]) for i in np.argsort(-last)[:200]}
    worst = 0.0
    for text, logprob in top.items():
        ids = [i for i, t in text_of.items() if t == text]
        assert ids, f"llmkit's top token {text!r} is not in transformers' top 200"
        worst = max(worst, min(abs(logprob - last[i]) for i in ids))
    print(f"F16: max |logprob - transformers'| over the top 5: {worst:.4f}")
    assert worst < F16_TOL

    # Greedy text: transformers' argmax continuation, one token at a time, in full f32.
    import torch

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    with torch.no_grad():
        seq = model.generate(torch.tensor([IDS]), max_new_tokens=12, do_sample=False,
                             min_new_tokens=12, eos_token_id=None)  # fmt: skip
    want = tok.decode(seq[0, len(IDS) :])
    greedy = client.completions.create(
        model="tiny-f16", prompt=IDS, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    assert greedy.choices[0].text == want


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K_M"])
def test_quantized_kl_is_bounded(env, tiny, ref, qtype, tmp_path, f16):
    name = f"tiny-{qtype.lower()}"
    # Q4_K_M from the safetensors (the converter, then the quantizer); Q8_0 from the
    # F16 GGUF that same converter made (the quantizer alone: the same weights, the
    # other source ``create`` takes, one converter run fewer).
    source = str(tiny) if qtype == "Q4_K_M" else catalog_names(env)["tiny-f16"]["path"]
    out = llmkit(env, "create", name, "--from", source, "--quantize", qtype.lower())
    assert out.returncode == 0, out.stderr
    row = catalog_names(env)[name]
    assert row["quantization"] == qtype
    kl = mean_kl(ref, gguf_logprobs(Path(row["path"]), IDS))
    print(f"{qtype}: mean KL(transformers || llmkit) = {kl:.4f} nats (bound {KL_BOUND[qtype]})")
    assert kl < KL_BOUND[qtype]
    if qtype == "Q4_K_M":  # the bound tells a right model from a wrong one
        other = tmp_path / "other"
        make_llama(other, seed=1)
        control = mean_kl(ref, reference_logprobs(other, IDS))
        print(f"control: another random model's mean KL = {control:.3f} nats")
        assert control > 5 * KL_BOUND[qtype]


def test_api_create_from_uploaded_safetensors_with_quantize(srv, env, tiny):
    client = ollama.Client(host=srv.url)
    files = {p.name: client.create_blob(p) for p in sorted(tiny.iterdir()) if p.is_file()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    lines = list(client.create("tiny-api", files=files, quantize="q4_K_M", stream=True))
    statuses = [line.status for line in lines]
    assert statuses[0] == "converting model"
    assert "quantizing F16 model to Q4_K_M" in statuses
    assert statuses[-3:] == ["creating new layer", "writing manifest", "success"]
    quantizing = [line for line in lines if line.status.startswith("quantizing")]
    assert quantizing[-1].completed == quantizing[-1].total > 0
    assert leftovers(env) == []

    assert "tiny-api:latest" in [m.model for m in client.list().models]
    shown = client.show("tiny-api")
    assert shown.details.family == "llama"
    assert shown.details.quantization_level == "Q4_K_M"
    n_params = shown.modelinfo["general.parameter_count"]
    assert shown.details.parameter_size.endswith("M") and 13_000_000 < n_params < 14_000_000
    served = [m.id for m in srv.client().models.list().data]
    assert "tiny-api" in served
    reply = client.generate("tiny-api", "hello", options={"num_predict": 3})
    assert reply.done and reply.eval_count >= 1


def test_api_create_refuses_bad_input_before_any_work(srv, env, tiny, tmp_path):
    client = ollama.Client(host=srv.url)
    files = {p.name: client.create_blob(p) for p in sorted(tiny.iterdir()) if p.is_file()}
    with pytest.raises(ollama.ResponseError) as e:
        client.create("bad", files=files, quantize="q3_x")
    assert e.value.status_code == 400
    assert "q3_x" in e.value.error and "Q4_K_M" in e.value.error and "Q6_K" in e.value.error
    foreign = tmp_path / "config.json"
    config = json.loads((tiny / "config.json").read_text())
    foreign.write_text(json.dumps({**config, "architectures": ["FooForCausalLM"]}))
    with pytest.raises(ollama.ResponseError) as e:
        client.create("bad", files={**files, "config.json": client.create_blob(foreign)})
    assert e.value.status_code == 400
    assert "FooForCausalLM" in e.value.error and "LlamaForCausalLM" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.create("bad", files={**files, "../x.json": files["config.json"]})
    assert e.value.status_code == 400
    assert "bad" not in catalog_names(env) and leftovers(env) == []


def test_cli_bad_input(env, tiny, tmp_path):
    out = llmkit(env, "create", "bad", "--from", str(tiny), "--quantize", "q9")
    assert out.returncode != 0
    assert "Unknown quantization type 'q9'" in out.stderr and "Q5_K_M" in out.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for p in tiny.iterdir():
        (foreign / p.name).symlink_to(p)
    (foreign / "config.json").unlink()
    config = json.loads((tiny / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**config, "architectures": ["FooModel"]}))
    out = llmkit(env, "create", "bad", "--from", str(foreign))
    assert out.returncode != 0 and "architectures: FooModel" in out.stderr
    assert "Supported:" in out.stderr and "Qwen2ForCausalLM" in out.stderr
    # The fit check refuses with numbers, before converting anything.
    out = llmkit({**env, "LLMKIT_MEMORY_GIB": "0.01"}, "create", "bad", "--from", str(tiny))
    assert out.returncode != 0
    assert "Not enough memory: converting needs about" in out.stderr
    assert "10.24 MiB is the LLMKIT_MEMORY_GIB" in out.stderr
    assert "bad" not in catalog_names(env) and leftovers(env) == []


def test_disk_check_refuses_with_numbers(tmp_path):
    from llmkit.errors import DiskFullError
    from llmkit.models.convert import check_room
    from llmkit.models.sizing import format_bytes

    with pytest.raises(DiskFullError) as e:
        check_room(tmp_path, 10**18, 0)
    assert f"converting needs {format_bytes(10**18)}" in e.value.message
    assert "is free" in e.value.message and str(tmp_path) in e.value.message


def test_a_corrupt_safetensors_leaves_nothing(env, tiny, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in tiny.iterdir():
        if p.name != "model.safetensors":
            (broken / p.name).symlink_to(p)
    data = (tiny / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])  # header intact, data cut
    out = llmkit(env, "create", "broken", "--from", str(broken), "--quantize", "q8_0")
    assert out.returncode != 0
    assert "llama.cpp's converter failed" in out.stderr
    assert "broken" not in catalog_names(env) and leftovers(env) == []
    assert not (Path(env["LLMKIT_MODELS"]) / "broken").exists()


def _children_writing_to(work: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and work in (proc / "cmdline").read_bytes().decode():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_ctrl_c_mid_conversion_leaves_nothing(env, tiny):
    models = Path(env["LLMKIT_MODELS"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmkit", "create", "cut", "--from", str(tiny)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The work directory exists from just before the converter starts; the converter
    # is running once a process names it on its command line.
    work = until(lambda: next(iter(models.glob(".creating-*")), None), what="the work dir")
    until(lambda: _children_writing_to(work.name) or None, what="the converter")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "interrupted; nothing was added" in err
    assert not work.exists() and leftovers(env) == []
    assert "cut" not in catalog_names(env)
    assert until(lambda: not _children_writing_to(work.name) or None, timeout=10)


def test_pull_a_safetensors_repo_with_quantize(env, srv, hub, ref):
    # Refused from config.json alone, before a byte of the weights moves.
    small = {**env, "LLMKIT_MEMORY_GIB": "0.01"}
    out = llmkit(small, "pull", "org/tiny-llama", "--quantize", "Q4_K_M")
    assert out.returncode != 0 and "Not enough memory: converting needs" in out.stderr
    assert hub.gets("config.json") and not hub.gets("model.safetensors")
    out = llmkit(env, "pull", "org/tiny-llama", "--quantize", "Q4_K_M")
    assert out.returncode == 0, out.stderr
    assert "created org/tiny-llama:q4_k_m" in out.stdout
    rows = catalog_names(env)
    assert rows["org/tiny-llama:q4_k_m"]["quantization"] == "Q4_K_M"
    assert rows["org/tiny-llama"]["format"] == "safetensors"  # what was pulled stays
    # Only what the converter reads was fetched: not the repo's PyTorch duplicate.
    assert hub.gets("model.safetensors") and hub.gets("tokenizer.json")
    assert not hub.gets("pytorch_model.bin")
    kl = mean_kl(ref, gguf_logprobs(Path(rows["org/tiny-llama:q4_k_m"]["path"]), IDS))
    assert kl < KL_BOUND["Q4_K_M"]
    tags = httpx.get(srv.url + "/api/tags").json()["models"]
    assert any(m["name"] == "org/tiny-llama:q4_k_m" for m in tags)
    # The pulled safetensors, named as in the catalog, make another model.
    out = llmkit(env, "create", "tiny-from-catalog", "--from", "org/tiny-llama", "-q", "q6_k")
    assert out.returncode == 0, out.stderr
    assert catalog_names(env)["tiny-from-catalog"]["quantization"] == "Q6_K"


def test_imatrix_guides_quantization(env, ref, tmp_path, f16):
    """An importance matrix in llama.cpp's GGUF format, made here from transformers'
    activations on the reference prompt, changes the weights chosen and keeps the KL
    bounded; one made for other tensors is refused with the names."""
    import gguf

    from llmkit.models.quantize import quantize

    row = catalog_names(env)["tiny-f16"]
    reader = gguf.GGUFReader(row["path"])
    writer = gguf.GGUFWriter(tmp_path / "imatrix.gguf", arch="imatrix")
    rng = np.random.default_rng(0)
    for t in reader.tensors:
        if len(t.shape) == 2 and t.name != "token_embd.weight":
            cols = int(t.shape[0])
            writer.add_tensor(t.name + ".in_sum2", rng.uniform(0.1, 10, (1, cols)).astype("f4"))
            writer.add_tensor(t.name + ".counts", np.array([[1.0]], dtype="f4"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # From the F16 GGUF: the importance matrix guides the quantizer alone, so the
    # converter's run (tested above) is not repeated.
    out = llmkit(env, "create", "tiny-imat", "--from", row["path"], "-q", "q4_k_m",
                 "--imatrix", str(tmp_path / "imatrix.gguf"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = catalog_names(env)
    path = Path(rows["tiny-imat"]["path"])
    plain = tmp_path / "plain.gguf"
    quantize(Path(row["path"]), plain, "Q4_K_M", lambda done, total: None)
    assert path.read_bytes() != plain.read_bytes()
    assert mean_kl(ref, gguf_logprobs(path, IDS)) < KL_BOUND["Q4_K_M"]

    other = gguf.GGUFWriter(tmp_path / "other.gguf", arch="imatrix")
    other.add_tensor("blk.0.nothing.in_sum2", np.ones((1, 8), dtype="f4"))
    other.add_tensor("blk.0.nothing.counts", np.ones((1, 1), dtype="f4"))
    other.write_header_to_file()
    other.write_kv_data_to_file()
    other.write_tensors_to_file()
    other.close()
    out = llmkit(env, "create", "tiny-imat2", "--from", row["path"], "-q", "q4_k_m",
                 "--imatrix", str(tmp_path / "other.gguf"))  # fmt: skip
    assert out.returncode != 0 and "made for another model" in out.stderr
    assert "blk.0.nothing" in out.stderr


def test_legacy_imatrix_and_quant_types_read_as_llama_cpp_writes_them(tmp_path):
    """The legacy .dat layout (entries: name, calls, values stored as mean x calls)
    and the type names, any case."""
    import struct

    from llmkit.errors import InvalidRequestError
    from llmkit.models.quantize import quant_type, read_imatrix

    name = b"blk.0.attn_q.weight"
    body = struct.pack("<i", 1) + struct.pack("<i", len(name)) + name
    body += struct.pack("<ii", 4, 3) + struct.pack("<3f", 4.0, 8.0, 2.0)
    (tmp_path / "m.dat").write_bytes(body + struct.pack("<i", 4))  # trailing: last call
    assert read_imatrix(tmp_path / "m.dat") == {"blk.0.attn_q.weight": [1.0, 2.0, 0.5]}
    assert [quant_type(t) for t in ("q4_k_m", "Q8_0", "f16", " q6_K")] == [
        "Q4_K_M", "Q8_0", "F16", "Q6_K",
    ]  # fmt: skip
    with pytest.raises(InvalidRequestError) as e:
        quant_type("q4_k_x")
    assert "valid types: F16, BF16, Q8_0, Q6_K, Q5_K_M" in e.value.message


def test_every_type_quantizes_to_what_it_names(env, tmp_path, f16):
    """Each type's llama.cpp ftype is the one the GGUF header then says."""
    from llmkit.models.metadata import read_gguf
    from llmkit.models.quantize import QUANT_TYPES, quantize

    source = Path(catalog_names(env)["tiny-f16"]["path"])
    for qtype in QUANT_TYPES:
        if qtype in ("F16", "BF16"):
            continue
        out = tmp_path / f"{qtype}.gguf"
        quantize(source, out, qtype, lambda done, total: None)
        assert read_gguf(out).quantization == qtype


def test_api_quantizes_a_catalog_f16_model(srv, env, f16):
    client = ollama.Client(host=srv.url)
    statuses = [r.status for r in client.create("tiny-q4-0", from_="tiny-f16", quantize="Q4_0",
                                                system="Be brief.", stream=True)]  # fmt: skip
    assert "converting model" not in statuses
    assert statuses[0] == "quantizing F16 model to Q4_0" and statuses[-1] == "success"
    shown = client.show("tiny-q4-0")
    assert shown.details.quantization_level == "Q4_0" and "Be brief." in shown.modelfile


def test_a_client_that_leaves_stops_the_conversion(srv, env, tiny):
    client = ollama.Client(host=srv.url)
    files = {p.name: client.create_blob(p) for p in sorted(tiny.iterdir()) if p.is_file()}
    body = {"model": "gone", "files": files, "quantize": "q8_0"}
    with httpx.stream("POST", srv.url + "/api/create", json=body, timeout=60) as r:
        first = json.loads(next(r.iter_lines()))
        assert first == {"status": "converting model"}
        work = next(iter(Path(env["LLMKIT_MODELS"]).glob(".creating-*")))
    # The connection is closed mid-conversion: the converter is killed, its files go.
    until(lambda: not work.exists() or None, timeout=30, what="the work dir to go")
    until(lambda: not _children_writing_to(work.name) or None, timeout=10)
    assert leftovers(env) == [] and "gone" not in catalog_names(env)
