"""The models people already have, read in place: an Ollama models folder
(manifests and blobs, as Ollama writes them), the Hugging Face cache and LM
Studio's folder, each written by the test around the bundled GGUF. ``llmkit
list`` shows them; ``llmkit serve --model smol`` serves Ollama's, with its
manifest's system prompt, stop strings and num_ctx."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import ollama
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from tests.conftest import Server, start_server

SYSTEM = "You are a terse assistant. Reply in one sentence."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _blob(blobs: Path, data: bytes | None = None, *, link: str | None = None) -> dict:
    """Store a layer as Ollama does (``sha256-<hex>``); the model blob is a link
    to the bundled GGUF, so the test copies nothing."""
    if link is not None:
        digest = hashlib.sha256(Path(link).read_bytes()).hexdigest()
        (blobs / f"sha256-{digest}").symlink_to(link)
        size = Path(link).stat().st_size
    else:
        assert data is not None
        digest = hashlib.sha256(data).hexdigest()
        (blobs / f"sha256-{digest}").write_bytes(data)
        size = len(data)
    return {"digest": f"sha256:{digest}", "size": size}


def write_ollama(root: Path, gguf: str, params: dict) -> None:
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    media = "application/vnd.ollama.image."
    layers = [
        {"mediaType": media + "model", **_blob(blobs, link=gguf)},
        {"mediaType": media + "template", **_blob(blobs, b"{{ .Prompt }}")},
        {"mediaType": media + "system", **_blob(blobs, SYSTEM.encode())},
        {"mediaType": media + "params", **_blob(blobs, json.dumps(params).encode())},
    ]
    config = _blob(blobs, b"{}")
    manifest = {"schemaVersion": 2, "config": config, "layers": layers}
    for namespace, name, tag in [("library", "smol", "latest"), ("alice", "tiny", "v1")]:
        where = root / "manifests/registry.ollama.ai" / namespace / name
        where.mkdir(parents=True)
        (where / tag).write_text(json.dumps(manifest))
    # A manifest whose model blob is gone is not a model.
    broken = root / "manifests/registry.ollama.ai/library/gone"
    broken.mkdir(parents=True)
    gone = {**manifest, "layers": [{**layers[0], "digest": "sha256:" + "0" * 64}]}
    (broken / "latest").write_text(json.dumps(gone))


@pytest.fixture()
def others(tmp_path: Path, bundled_path: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A space as the stop string: any reply of more than one word holds one, whatever
    # the model says.
    params = {"stop": [" "], "num_ctx": 768, "temperature": 0, "num_predict": 40}
    write_ollama(tmp_path / "ollama", bundled_path, params)
    snap = tmp_path / "hf/hub/models--bartowski--SmolLM2-135M-GGUF/snapshots/abc123"
    snap.mkdir(parents=True)
    (snap / "SmolLM2-135M-Q4_1.gguf").symlink_to(bundled_path)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs/main").write_text("abc123")
    studio = tmp_path / "lmstudio/lmstudio-community/SmolLM2-GGUF"
    studio.mkdir(parents=True)
    for quant in ("Q4_1", "Q8_0"):
        (studio / f"SmolLM2-135M-Instruct-{quant}.gguf").symlink_to(bundled_path)
    env = {
        "LLMKIT_HOME": str(tmp_path / "home"),
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "HF_HOME": str(tmp_path / "hf"),
        "LLMKIT_LMSTUDIO_MODELS": str(tmp_path / "lmstudio"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LLMKIT_MODELS", raising=False)
    monkeypatch.delenv("LLMKIT_OTHER_MODELS", raising=False)
    return tmp_path


def llmkit(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def test_list_shows_the_models_other_tools_keep(others, bundled_path):
    code, out = llmkit("list", "--json")
    assert code == 0, out
    rows = {r["name"]: r for r in json.loads(out)}
    assert [(n, r["source"]) for n, r in rows.items()] == [
        ("SmolLM2-135M-Instruct", "bundled"),
        ("alice/tiny:v1", "ollama"),
        ("smol:latest", "ollama"),
        ("bartowski/SmolLM2-135M-GGUF", "hf-cache"),
        ("lmstudio-community/SmolLM2-GGUF:q4_1", "lmstudio"),
        ("lmstudio-community/SmolLM2-GGUF:q8_0", "lmstudio"),
    ]
    blob = rows["smol:latest"]
    # Read where Ollama keeps it: the blob, known as a GGUF by its header.
    assert Path(blob["path"]).parent == others / "ollama/blobs"
    assert blob["format"] == "gguf" and blob["quantization"] == "Q4_1"
    assert blob["size"] == Path(bundled_path).stat().st_size
    assert rows["bartowski/SmolLM2-135M-GGUF"]["context_length"] == 8192

    code, out = llmkit("list")
    assert "smol:latest" in out and " ollama" in out and "lmstudio" in out

    # `show` reads them too, by Ollama's short name.
    code, out = llmkit("show", "smol")
    assert code == 0 and "architecture   llama" in out
    assert f"system         {SYSTEM}" in out.splitlines()
    assert (
        'parameters     {"stop": [" "], "num_ctx": 768, "temperature": 0, "num_predict": 40}'
        in out.splitlines()
    )
    code, out = llmkit("show", "smol:latest", "--json")
    assert json.loads(out)["modelfile"]["template"] == "{{ .Prompt }}"


def test_other_tools_models_are_never_removed_and_can_be_left_out(others, monkeypatch):
    code, out = llmkit("rm", "smol", "--yes")
    assert code == 1
    assert "smol:latest belongs to ollama" in out and "Remove it with that tool" in out
    assert len(list((others / "ollama/blobs").iterdir())) == 5  # nothing touched

    monkeypatch.setenv("LLMKIT_OTHER_MODELS", "hf-cache")
    code, out = llmkit("list", "--json")
    assert [r["source"] for r in json.loads(out)] == ["bundled", "hf-cache"]
    monkeypatch.setenv("LLMKIT_OTHER_MODELS", "none")
    code, out = llmkit("list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["SmolLM2-135M-Instruct"]
    monkeypatch.setenv("LLMKIT_OTHER_MODELS", "docker")
    code, out = llmkit("list")
    assert code == 2 and "LLMKIT_OTHER_MODELS takes ollama, hf-cache, lmstudio or none" in out


@pytest.fixture()
def ollama_served(others: Path) -> Server:
    s = start_server(
        others / "srv",
        "--model",
        "smol",
        env={k: str(others / v) for k, v in [("OLLAMA_MODELS", "ollama"), ("HF_HOME", "hf")]},
    )
    yield s
    s.stop()


def test_serve_an_ollama_model_with_its_manifest(ollama_served, server):
    # Served as Ollama users call it, with or without ":latest".
    tags = [m.model for m in ollama.Client(host=ollama_served.url).list().models]
    # First what it serves (as Ollama lists an untagged name), then the local catalog's.
    assert tags[0] == "smol:latest"
    # The manifest's num_ctx is the context; its system prompt goes first.
    tok = httpx.post(
        ollama_served.url + "/tokenize", json={"model": "smol", "messages": QUESTION}
    ).json()
    assert tok["max_model_len"] == 768
    prompt = httpx.post(
        ollama_served.url + "/detokenize", json={"model": "smol", "tokens": tok["tokens"]}
    ).json()["prompt"]
    assert SYSTEM in prompt

    # The same question with that system prompt, on the plain bundled model: the
    # Ollama model's stop string (a space) ends its answer before the first space.
    plain = server.client().chat.completions.create(
        model="smol",
        messages=[{"role": "system", "content": SYSTEM}, *QUESTION],
        max_tokens=40,
        temperature=0,
    )
    full = plain.choices[0].message.content
    assert " " in full.strip()
    r = ollama.Client(host=ollama_served.url).chat(
        model="smol:latest", messages=QUESTION, options={"temperature": 0, "num_predict": 40}
    )
    assert r.done_reason == "stop"
    assert r.message.content == full[: full.index(" ")]
    # No options at all: the manifest's temperature 0 and num_predict 40 are the
    # defaults, so the answer is that same greedy one (sampled at the API's
    # default temperature, it would wander).
    again = ollama.Client(host=ollama_served.url).chat(model="smol", messages=QUESTION)
    assert again.message.content == r.message.content
    assert "serving smol" in ollama_served.log()
