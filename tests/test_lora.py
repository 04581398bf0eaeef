"""LoRA adapters on llama.cpp, held to transformers with the adapter merged.

The models are made here: a tiny Llama-architecture causal LM with random weights
(as tests/test_convert.py makes it: the bundled SmolLM2's tokenizer, rebuilt from the
bundled GGUF by transformers' GGUF loader, so nothing is downloaded and llama.cpp's
converter recognises a real tokenizer), saved in f16 and converted to an F16 GGUF
by llama.cpp's ``convert_hf_to_gguf.py``; and a PEFT LoRA for it (q, v and down
projections, rank 8) whose B matrices are random, not PEFT's zeros, so the adapter
really moves the logits (by up to ~4 nats here). One copy of it is converted to a
GGUF adapter by llama.cpp's ``convert_lora_to_gguf.py`` in the setup; the PEFT
directory itself is given to ``llmkit serve --lora``, which converts it.

Tolerance: the served next-token log-probabilities (``/v1/completions``' top 5, the
most that endpoint gives) within ``TOL`` = 0.05 nats of transformers' in f32 (the
base, and the base with the adapter merged by ``merge_and_unload``); measured
0.007 at most. The adapter moves the top tokens by far more than that (asserted),
so a served adapter that is not applied, or applied to the base's requests, fails.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.models.bundled import bundled_model_path
from llmkit.models.llama_source import llama_cpp_dir
from tests.conftest import Server, start_server
from tests.tiny_models import LLAMA_IDS, bundled_tokenizer

IDS = LLAMA_IDS  # a prompt as token ids: no tokenizer differences to argue
TOL = 0.05


def llama_cpp_source() -> Path:
    """llama.cpp's kept sources (scripts/bootstrap.sh puts them in the venv)."""
    path = llama_cpp_dir()
    assert (path / "convert_lora_to_gguf.py").is_file(), f"no llama.cpp sources at {path}"
    return path


def make_lora(base: Path, out: Path, seed: int = 1) -> None:
    import peft
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"])
    tuned = peft.get_peft_model(model, cfg)
    torch.manual_seed(seed)
    with torch.no_grad():  # PEFT starts B at zero: an adapter that changes nothing
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    tuned.save_pretrained(out)


def convert(script: str, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(llama_cpp_source() / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def reference(base: Path, adapter: Path | None) -> np.ndarray:
    """transformers' next-token log-probabilities after ``IDS``, in f32; with the
    adapter merged into the weights when given."""
    import peft
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = peft.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    with torch.no_grad():
        logits = model(torch.tensor([IDS])).logits[0, -1]
    return torch.log_softmax(logits, -1).numpy().astype(np.float64)


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_llama: Path) -> dict[str, Path]:
    """The base is the session's tiny Llama (``make_llama``, shared with the
    conversion tests: read only)."""
    tmp = tmp_path_factory.mktemp("lora")
    make_lora(tiny_llama, tmp / "peft")
    convert("convert_hf_to_gguf.py", str(tiny_llama), "--outtype", "f16",
            "--outfile", str(tmp / "base.gguf"))  # fmt: skip
    convert("convert_lora_to_gguf.py", str(tmp / "peft"), "--base", str(tiny_llama),
            "--outtype", "f16", "--outfile", str(tmp / "tuned.gguf"))  # fmt: skip
    names = {"peft": "peft", "base": "base.gguf", "lora": "tuned.gguf"}
    return {"hf": tiny_llama} | {k: tmp / v for k, v in names.items()}


@pytest.fixture(scope="module")
def refs(made, tiny_llama_ref: np.ndarray) -> dict[str, np.ndarray]:
    # the base's: the last position of the session's reference (the same forward pass)
    return {"base": tiny_llama_ref[-1], "tuned": reference(made["hf"], made["peft"])}


def write_ollama_store(root: Path, gguf: Path, adapter: Path) -> None:
    """An Ollama install's store holding ``ollama-tuned``: the base's blob and an
    adapter layer, as Ollama's ``create`` writes a Modelfile's ``ADAPTER``."""
    import hashlib

    media = "application/vnd.ollama.image."
    (root / "blobs").mkdir(parents=True)
    layers = []
    for kind, path in (("model", gguf), ("adapter", adapter)):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / f"sha256-{digest}").write_bytes(data)
        layers.append({"mediaType": media + kind, "digest": f"sha256:{digest}", "size": len(data)})
    where = root / "manifests/registry.ollama.ai/library/ollama-tuned"
    where.mkdir(parents=True)
    (where / "latest").write_text(json.dumps({"schemaVersion": 2, "layers": layers}))


@pytest.fixture(scope="module")
def srv(tmp_path_factory, made) -> Server:
    tmp = tmp_path_factory.mktemp("srv")
    s = start_server(
        tmp, "--model", str(made["base"]), "--served-model-name", "tiny",
        "--lora-modules", f"tuned={made['lora']}",
        "--lora-modules", f"zero={made['lora']}:0",  # scale 0: the base's logits
        "--lora", str(made["peft"]),  # converted by llmkit: served as 'peft'
        "--max-model-len", "256", "--parallel", "2",
        env={"LLMKIT_MODELS": str(tmp / "models")},
    )  # fmt: skip
    yield s
    s.stop()


def top5(srv: Server, model: str, prompt: list[int] = IDS) -> dict[str, float]:
    r = httpx.post(
        srv.v1 + "/completions",
        json={"model": model, "prompt": prompt, "max_tokens": 1, "logprobs": 5},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["logprobs"]["top_logprobs"][0]


def token_id(text: str) -> int:
    [tid] = bundled_tokenizer().encode(text, add_special_tokens=False)
    return tid


def assert_matches(got: dict[str, float], ref: np.ndarray) -> None:
    want = np.argsort(-ref)[:5]
    ids = [token_id(t) for t in got]
    assert ids == list(want), (got, want)
    for t, lp in got.items():
        assert abs(lp - ref[token_id(t)]) < TOL, (t, lp, ref[token_id(t)])


def test_the_adapter_moves_the_logits_beyond_the_tolerance(refs) -> None:
    top = np.argsort(-refs["tuned"])[:5]
    assert np.abs(refs["tuned"][top] - refs["base"][top]).max() > 10 * TOL


def test_served_adapters_match_transformers_with_the_adapter_merged(srv, refs) -> None:
    assert_matches(top5(srv, "tuned"), refs["tuned"])  # a GGUF adapter, as converted
    assert_matches(top5(srv, "peft"), refs["tuned"])  # its PEFT directory, converted by llmkit
    assert_matches(top5(srv, "zero"), refs["base"])  # scale 0: nothing added
    assert_matches(top5(srv, "tiny"), refs["base"])


def test_an_ollama_model_with_an_adapter_layer_is_served_with_it(tmp_path, made, refs) -> None:
    write_ollama_store(tmp_path / "ollama", made["base"], made["lora"])
    env = {"OLLAMA_MODELS": str(tmp_path / "ollama"), "LLMKIT_MODELS": str(tmp_path / "m")}
    s = start_server(tmp_path, "--model", "ollama-tuned", "--max-model-len", "256", env=env)
    try:
        assert "ADAPTER " in ollama.Client(host=s.url).show("ollama-tuned").modelfile
        assert_matches(top5(s, "ollama-tuned"), refs["tuned"])
    finally:
        s.stop()


def test_the_base_is_unchanged_while_adapters_serve_at_the_same_time(srv) -> None:
    def greedy(model: str, prompt: list[int]) -> tuple[str, list[float]]:
        r = httpx.post(
            srv.v1 + "/completions",
            json={"model": model, "prompt": prompt, "max_tokens": 24, "temperature": 0,
                  "logprobs": 1, "ignore_eos": True},
            timeout=300,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        return choice["text"], choice["logprobs"]["token_logprobs"]

    prompts = [IDS[i:] + IDS[:i] for i in range(4)]
    alone = [greedy("tiny", p) for p in prompts]  # the base with nothing beside it
    tuned_alone = greedy("tuned", prompts[0])
    with cf.ThreadPoolExecutor(8) as pool:  # now base and adapters at once
        base_jobs = [pool.submit(greedy, "tiny", p) for p in prompts]
        other = [pool.submit(greedy, m, p) for p in prompts for m in ("tuned", "peft")]
        together = [j.result() for j in base_jobs]
        tuned_together = other[0].result()
        [j.result() for j in other]
    for (text_a, lp_a), (text_b, lp_b) in zip(alone, together, strict=True):
        assert text_a == text_b
        # Batched with other base requests, ggml's sums run in another order: ~1e-3
        # apart (measured 0.0014), where an adapter leaking in moves them by > 0.5.
        np.testing.assert_allclose(lp_a, lp_b, atol=0.01)
    assert tuned_together[0] == tuned_alone[0]
    assert tuned_alone[0] != alone[0][0]  # the adapter's reply is its own


def test_an_adapters_model_embeds_through_its_adapter(srv) -> None:
    def vector(model: str) -> np.ndarray:
        got = srv.client().embeddings.create(model=model, input="a note about the moon")
        return np.array(got.data[0].embedding)

    base, tuned, zero = vector("tiny"), vector("tuned"), vector("zero")
    np.testing.assert_allclose(zero, base, atol=1e-4)  # scale 0: the base's
    assert float(np.dot(tuned, base)) < 0.999  # unit vectors the adapter moved


def test_listings_show_each_adapter_as_a_model_with_its_base(srv, monkeypatch) -> None:
    ids = {m.id: m for m in srv.client().models.list().data}
    assert {"tiny", "tuned", "zero", "peft"} <= set(ids)
    assert ids["tuned"].model_extra["parent"] == "tiny"
    client = ollama.Client(host=srv.url)
    tags = {m.model for m in client.list().models}
    assert {"tiny:latest", "tuned:latest", "peft:latest"} <= tags
    shown = client.show("tuned")
    assert shown.details.parent_model == "tiny"
    assert "ADAPTER " in shown.modelfile and "tuned" in shown.modelinfo["llmkit.lora.adapters"]
    assert shown.modelinfo["llmkit.lora.base_model"] == "tiny"
    monkeypatch.setenv("LLMKIT_HOME", str(srv.home))
    monkeypatch.delenv("LLMKIT_URL", raising=False)
    r = CliRunner().invoke(cli, ["ps", "--json"])
    assert r.exit_code == 0, r.output
    running = {row["name"] for row in json.loads(r.output)}
    assert {"tiny", "tuned", "peft"} <= {n.removesuffix(":latest") for n in running}


def test_catalog_models_served_on_demand_carry_no_adapter_of_the_flags(srv) -> None:
    # The bundled model is another shape: given --lora-modules' adapter, it would be refused.
    r = srv.client().completions.create(model="SmolLM2-135M-Instruct", prompt="Hi", max_tokens=2)
    assert r.choices[0].text is not None


def test_an_adapter_for_another_model_is_refused_naming_both(tmp_path, made) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmkit", "serve", "--port", "0",
         "--model", bundled_model_path(), "--served-model-name", "smol",
         "--lora-modules", f"tuned={made['lora']}"],
        env={**os.environ, "LLMKIT_HOME": str(tmp_path / "home"),
             "LLMKIT_MODELS": str(tmp_path / "models")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    err = done.stderr + done.stdout
    assert "tuned" in err and "does not fit the base model" in err, err
    assert "SmolLM2" in err or "smol" in err, err
    assert "Traceback" not in err


def test_modelfile_adapter_through_api_create(srv, made, refs) -> None:
    client = ollama.Client(host=srv.url)
    digest = client.create_blob(made["lora"])
    done = client.create(model="tiny-tuned", from_="tiny", adapters={"tuned.gguf": digest})
    assert done.status == "success"
    assert "ADAPTER " in client.show("tiny-tuned").modelfile
    assert_matches(top5(srv, "tiny-tuned"), refs["tuned"])
    # The bundled model is another architecture's shapes: refused now, with both names.
    with pytest.raises(ollama.ResponseError) as e:
        client.create(model="smol-tuned", from_=bundled_model_path(),
                      adapters={"tuned.gguf": digest})  # fmt: skip
    assert e.value.status_code == 400
    assert "tuned.gguf" in e.value.error and "SmolLM2" in e.value.error, e.value.error


def test_base_and_adapter_contexts_share_one_load_of_the_weights(made) -> None:
    from llmkit.engines.llamacpp.model import LoadedModel, LoadOptions
    from llmkit.engines.llamacpp.weights import SharedWeights

    weights = SharedWeights(str(made["base"]))

    def load(adapters: tuple = ()) -> LoadedModel:
        opts = LoadOptions(str(made["base"]), n_ctx=64, n_threads=1, host_cache_mib=0,
                           weights=weights, adapters=adapters)  # fmt: skip
        return LoadedModel(opts)

    base = load()
    tuned = load(((str(made["lora"]), 1.0, "tuned"),))
    assert weights.loads == 1 and tuned.model is base.model and weights.users == 2
    base.close()  # the adapter's context still runs on the weights
    assert weights.users == 1 and tuned.tokenize("hi", add_bos=False, special=False)
    tuned.close()
    assert weights.users == 0
    again = load()  # the last one gone, the next loads them afresh
    assert weights.loads == 2
    again.close()


@pytest.mark.parametrize(
    ("given", "path", "scale", "name"),
    [
        ("a.gguf", "a.gguf", 1.0, None),
        ("/x/a.gguf:0.5", "/x/a.gguf", 0.5, None),
        ("sql=/x/a.gguf:2", "/x/a.gguf", 2.0, "sql"),
        ("sql=./peft-dir", "peft-dir", 1.0, "sql"),
        ("/x/we:ird", "/x/we:ird", 1.0, None),  # a ':' that is no scale stays in the path
    ],
)
def test_lora_flags_read_as_llama_server_and_vllm_write_them(given, path, scale, name) -> None:
    from llmkit.models.lora import parse_lora

    spec = parse_lora(given)
    assert (spec.path, spec.scale, spec.name) == (Path(path), scale, name)


def test_the_fit_check_counts_each_adapters_context(made) -> None:
    from llmkit.errors import InsufficientMemoryError
    from llmkit.models.fit import fit_before_serving
    from llmkit.models.fit_companions import fit_adapters

    est = fit_before_serving(made["base"], "tiny", max_model_len=256, parallel=2, memory_gib=1)
    size = made["lora"].stat().st_size
    gib = 1024**3
    one = fit_adapters(est, "tiny", [("tuned", size)], contexts=1, memory_gib=1)
    assert one == est.per_device_bytes + size + est.kv_bytes + est.overhead_bytes
    with pytest.raises(InsufficientMemoryError) as e:  # room for the base and one more context
        fit_adapters(est, "tiny", [("a", size), ("b", size)], contexts=2, memory_gib=one / gib)
    assert (
        "tiny" in e.value.message
        and "a, b" in e.value.message
        and "2 context(s)" in e.value.message
    )
