"""The local catalog: ``list``, ``show``, ``rm`` in-process, name resolution for
``serve --model``, and a real server started by catalog name."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.env import ModelsSettings
from llmkit.errors import ModelSpecError
from llmkit.models.catalog import Catalog
from llmkit.models.resolve import resolve_model
from llmkit.models.sizing import format_bytes
from tests.conftest import start_server
from tests.tiny_models import hf_repo, tiny_gguf, write_repo

BUNDLED_ROW = "SmolLM2-135M-Instruct  gguf         135M    Q4_1         93.81 MiB  8192     bundled"


@pytest.fixture(autouse=True)
def models(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMKIT_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def add(models: Path, repo: str, files: dict[str, bytes], *, complete: bool = True,
        source: str = "hf", alias: str | None = None) -> Path:  # fmt: skip
    """A model as `llmkit pull` leaves it: files plus the manifest."""
    catalog = Catalog(models)
    directory = catalog.begin(repo, source=source, revision=None, alias=alias)
    write_repo(directory, files)
    if complete:
        catalog.finish(repo)
    return directory


def invoke(*args: str, **kw):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), **kw)


@pytest.fixture()
def pulled(models) -> dict[str, dict[str, bytes]]:
    files = {
        "org/tiny": hf_repo(),
        "org/tiny-GGUF": {"tiny-q8_0.gguf": tiny_gguf("Q8_0"), "tiny-f16.gguf": tiny_gguf("F16")},
        "org/half": {"half-q8_0.gguf": tiny_gguf("Q8_0")[:1000]},
    }
    add(models, "org/tiny", files["org/tiny"], source="modelscope")
    add(models, "org/tiny-GGUF", files["org/tiny-GGUF"], alias="tiny")
    add(models, "org/half", files["org/half"], complete=False)
    return files


def test_a_fresh_install_lists_the_bundled_model():
    result = invoke("list")
    assert result.exit_code == 0
    assert result.output == (
        "NAME                   FORMAT  PARAMS  QUANT/DTYPE  SIZE       CONTEXT  SOURCE\n"
        "SmolLM2-135M-Instruct  gguf    135M    Q4_1         93.81 MiB  8192     bundled\n"
    )


def test_list_pulled_models(pulled):
    def size(files):
        return format_bytes(sum(len(b) for b in files.values()))

    gg = pulled["org/tiny-GGUF"]
    expected = [
        ("NAME", "FORMAT", "PARAMS", "QUANT/DTYPE", "SIZE", "CONTEXT", "SOURCE"),
        ("SmolLM2-135M-Instruct", "gguf", "135M", "Q4_1", "93.81 MiB", "8192", "bundled"),
        ("org/half", "gguf", "?", "?", size(pulled["org/half"]), "?", "hf (incomplete)"),
        ("org/tiny", "safetensors", "90.4K", "float32", size(pulled["org/tiny"]), "512",
         "modelscope"),
        ("org/tiny-GGUF:f16", "gguf", "90.4K", "F16", format_bytes(len(gg["tiny-f16.gguf"])),
         "512", "hf"),
        ("org/tiny-GGUF:q8_0", "gguf", "90.4K", "Q8_0", format_bytes(len(gg["tiny-q8_0.gguf"])),
         "512", "hf"),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in expected) for i in range(7)]
    result = invoke("list")
    assert result.output == "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in expected
    )


def test_list_json(pulled, models):
    rows = json.loads(invoke("list", "--json").output)
    assert [r["name"] for r in rows] == [
        "SmolLM2-135M-Instruct", "org/half", "org/tiny", "org/tiny-GGUF:f16", "org/tiny-GGUF:q8_0",
    ]  # fmt: skip
    q8 = rows[-1]
    assert q8 == {
        "name": "org/tiny-GGUF:q8_0",
        "format": "gguf",
        "parameters": 90432,
        "quantization": "Q8_0",
        "size": len(pulled["org/tiny-GGUF"]["tiny-q8_0.gguf"]),
        "context_length": 512,
        "source": "hf",
        "complete": True,
        "path": str(models / "org/tiny-GGUF/tiny-q8_0.gguf"),
        "projector": None,
    }


def test_show_the_bundled_model(bundled_path):
    result = invoke("show", "smollm2-135m-instruct")  # any case
    assert result.output == (
        "name           SmolLM2-135M-Instruct\n"
        f"path           {bundled_path}\n"
        "format         gguf\n"
        "architecture   llama\n"
        "parameters     134,515,008 (135M)\n"
        "quantisation   Q4_1\n"
        "layers         30\n"
        "hidden size    576\n"
        "heads          9\n"
        "KV heads       3\n"
        "head dim       64\n"
        "vocabulary     49152\n"
        "context length 8192\n"
        "chat template  yes\n"
        "licence        apache-2.0\n"
    )


def test_show_a_hugging_face_model(pulled, models):
    out = json.loads(invoke("show", "tiny", "--json").output)  # the part after the owner
    assert out["name"] == "org/tiny" and out["path"] == str(models / "org/tiny")
    facts = out["facts"]
    assert {k: facts[k] for k in ("format", "architecture", "n_params", "params_counted",
                                "n_layers", "n_heads", "n_kv_heads", "head_dim", "vocab_size",
                                "context_length", "dtype", "chat_template", "license")} == {
        "format": "safetensors", "architecture": "llama", "n_params": 90432,
        "params_counted": True, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16,
        "vocab_size": 256, "context_length": 512, "dtype": "float32", "chat_template": True,
        "license": "apache-2.0",
    }  # fmt: skip


def test_a_repo_of_several_ggufs_needs_a_tag(pulled):
    result = invoke("show", "org/tiny-GGUF")
    assert result.exit_code == 1
    assert result.output == (
        "Error: 'org/tiny-GGUF' holds several GGUF files; name one: org/tiny-GGUF:f16, "
        "org/tiny-GGUF:q8_0.\n"
    )
    # The tag, with the repo id or the short name it was pulled as.
    assert "quantisation   F16" in invoke("show", "org/tiny-gguf:F16").output
    assert "quantisation   Q8_0" in invoke("show", "tiny:q8_0").output


def test_unknown_names_are_one_line_errors():
    result = invoke("show", "nobody/nothing")
    assert result.exit_code == 1
    assert result.output == (
        "Error: No model named 'nobody/nothing' here. `llmkit list` shows the models on this "
        "machine; `llmkit pull nobody/nothing` fetches one.\n"
    )


def test_rm_asks_first(pulled, models):
    size = format_bytes(sum(len(b) for b in pulled["org/tiny"].values()))
    result = invoke("rm", "org/tiny", input="n\n")
    assert result.exit_code == 1
    assert result.output == f"Remove org/tiny ({size})? [y/N]: n\nError: nothing removed.\n"
    assert (models / "org/tiny/config.json").exists()
    result = invoke("rm", "org/tiny", input="y\n")
    assert result.output == f"Remove org/tiny ({size})? [y/N]: y\nremoved org/tiny ({size})\n"
    assert not (models / "org/tiny").exists()
    assert "org/tiny " not in invoke("list").output


def test_rm_one_gguf_of_several(pulled, models):
    size = format_bytes(len(pulled["org/tiny-GGUF"]["tiny-f16.gguf"]))
    result = invoke("rm", "org/tiny-GGUF:f16", "--yes")
    assert result.output == f"removed org/tiny-GGUF:f16 ({size})\n"
    assert sorted(p.name for p in (models / "org/tiny-GGUF").iterdir()) == [
        ".llmkit.json", "tiny-q8_0.gguf"]  # fmt: skip
    # One GGUF left: the repo id alone now names it.
    assert invoke("list").output.splitlines()[-1].startswith("org/tiny-GGUF  ")
    invoke("rm", "org/tiny-GGUF", "--yes")
    assert not (models / "org/tiny-GGUF").exists() and (models / "org").exists()
    invoke("rm", "org/tiny", "--yes")
    invoke("rm", "org/half", "--yes")  # an incomplete pull can be removed too
    assert not (models / "org").exists()  # the owner directory goes when empty


def test_the_bundled_model_cannot_be_removed():
    result = invoke("rm", "SmolLM2-135M-Instruct", "--yes")
    assert result.exit_code == 1
    assert result.output == (
        "Error: SmolLM2-135M-Instruct ships with llmkit and cannot be removed.\n"
    )


def test_cache_dir_flag_overrides_the_environment(tmp_path, pulled):
    other = tmp_path / "elsewhere"
    add(other, "x/only-here", {"m-q8_0.gguf": tiny_gguf("Q8_0")})
    names = [r["name"] for r in json.loads(invoke("list", "--json", "--cache-dir", str(other))
                                           .output)]  # fmt: skip
    assert names == ["SmolLM2-135M-Instruct", "x/only-here"]


# -- what `serve --model` accepts ------------------------------------------------


def test_resolve_every_kind_of_model_name(pulled, models, tmp_path, bundled_path):
    settings = ModelsSettings()
    gguf = models / "org/tiny-GGUF/tiny-q8_0.gguf"
    cases = {
        None: (Path(bundled_path), "SmolLM2-135M-Instruct"),
        "org/tiny-GGUF:q8_0": (gguf, "org/tiny-GGUF:q8_0"),  # a catalog name
        "ORG/TINY-GGUF:Q8_0": (gguf, "org/tiny-GGUF:q8_0"),  # any case
        "tiny:q8_0": (gguf, "org/tiny-GGUF:q8_0"),  # the name it was pulled as
        str(gguf): (gguf, "tiny-q8_0"),  # a .gguf path
    }
    hf_dir = write_repo(tmp_path / "local-hf", {**hf_repo(), "m-q8_0.gguf": tiny_gguf("Q8_0")})
    cases[str(hf_dir)] = (hf_dir / "m-q8_0.gguf", "local-hf")  # a HF directory with a GGUF
    for spec, (path, name) in cases.items():
        got = resolve_model(spec, settings)
        assert (got.path, got.name) == (path, name), spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("org/tiny", "org/tiny is a Hugging Face (safetensors) model: serve it with "
         "--engine transformers (or --engine vllm on a GPU). The llama.cpp engine loads GGUF "
         "files: pull a GGUF build instead, e.g. `llmkit pull OWNER/NAME-GGUF --include "
         "'*q4_k_m.gguf'`."),
        ("org/half", "The pull of org/half did not finish; `llmkit pull org/half` resumes it."),
        ("./gone.gguf", "No such file or directory: ./gone.gguf"),
    ],
)  # fmt: skip
def test_resolve_refuses_with_what_to_do(pulled, spec, message):
    with pytest.raises(ModelSpecError) as e:
        resolve_model(spec, ModelsSettings())
    assert e.value.message == message


def test_serve_a_model_by_its_catalog_name(tmp_path, models, bundled_path):
    directory = add(models, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", {})
    (directory / "smollm2-135m-instruct-q4_1.gguf").symlink_to(bundled_path)
    server = start_server(
        tmp_path / "srv", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        env={"LLMKIT_MODELS": str(models)},
    )  # fmt: skip
    try:
        ids = [m["id"] for m in httpx.get(server.v1 + "/models").json()["data"]]
        # The served model, then what else the catalog holds (served on demand).
        assert ids == ["HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct"]
    finally:
        server.stop()
