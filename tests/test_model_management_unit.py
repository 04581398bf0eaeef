"""The pure parts of model management, as tables: a made model's Modelfile applied
to a chat, Ollama's names, ``hf.co/...:QUANT`` as a pull, pull events as Ollama's
progress lines, a made model's show, and the catalog's look-up of Ollama names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmkit.api.models_view import ModelView
from llmkit.api.ollama import listings
from llmkit.api.ollama.manage_schemas import PullLines
from llmkit.core.types import EngineInfo, GenerateRequest, Message
from llmkit.models import derived
from llmkit.models.catalog import Catalog
from llmkit.models.download import PullEvent, PullRequest
from llmkit.models.hf_names import to_pull_request
from llmkit.models.hubs import RemoteFile
from llmkit.models.modelfile import Modelfile

U, S = Message("user", "hi"), Message("system", "mine")
MF = Modelfile(system="pirate", messages=(Message("user", "ahoy"), Message("assistant", "arr")))


@pytest.mark.parametrize(
    ("mf", "given", "sent"),
    [
        (MF, (U,), (Message("system", "pirate"), *MF.messages, U)),
        # A request's own system message wins; the stored turns still come first.
        (MF, (S, U), (S, *MF.messages, U)),
        (Modelfile(system="pirate"), (S, U), (S, U)),
        (Modelfile(), (U,), (U,)),
    ],
)
def test_a_modelfile_is_applied_to_a_chat(mf, given, sent):
    assert mf.apply(GenerateRequest(messages=given)).messages == sent


def test_a_modelfile_leaves_raw_prompts_alone():
    req = GenerateRequest(prompt="raw text")
    assert MF.apply(req) is req


@pytest.mark.parametrize(
    ("name", "split", "stored"),
    [
        ("mario", ("mario", "latest"), "mario"),
        ("mario:latest", ("mario", "latest"), "mario"),
        ("mario:v2", ("mario", "v2"), "mario:v2"),
        ("user/mario:v2", ("user/mario", "v2"), "user/mario:v2"),
    ],
)
def test_ollama_names(name, split, stored):
    assert derived.split_name(name) == split and derived.canonical(name) == stored


@pytest.mark.parametrize(
    ("name", "req"),
    [
        ("org/repo", PullRequest(repo="org/repo")),
        ("org/repo:latest", PullRequest(repo="org/repo")),
        ("hf.co/org/repo:Q4_K_M", PullRequest(repo="org/repo", include=("*Q4_K_M*.gguf",))),
        ("huggingface.co/org/repo", PullRequest(repo="org/repo")),
        ("qwen2.5:0.5b", PullRequest(repo="qwen2.5:0.5b")),  # pull's own names and tags
    ],
)
def test_names_as_pulls(name, req):
    assert to_pull_request(name) == req


def test_pull_events_as_ollamas_progress_lines():
    lines = PullLines()
    sha = "ab" * 32
    files = (RemoteFile("m.gguf", 1000, sha), RemoteFile("README.md", 10))
    got = [
        p.model_dump(exclude_none=True)
        for e in (
            PullEvent("trying", source="hf", message="http://hub"),
            PullEvent("failed", source="hf", message="down"),
            PullEvent("trying", source="modelscope", message="http://ms"),
            PullEvent("files", files=files, total=1010),
            PullEvent("downloading", file="m.gguf", completed=5, total=1000),
            PullEvent("downloading", file="m.gguf", completed=9, total=1000),  # < 1%: not sent
            PullEvent("downloading", file="m.gguf", completed=1000, total=1000),
            PullEvent("success", message="org/repo"),
        )
        for p in lines.of(e)
    ] + [p.model_dump(exclude_none=True) for p in lines.closing()]
    # A file with the hub's digest is named by it, as Ollama names a layer; else by path.
    pulling = {"status": "pulling abababababab", "digest": f"sha256:{sha}", "total": 1000}
    assert got == [
        {"status": "pulling manifest"},
        {**pulling, "completed": 0},
        {"status": "pulling README.md", "digest": "README.md", "total": 10, "completed": 0},
        {**pulling, "completed": 5},
        {**pulling, "completed": 1000},
        {"status": "writing manifest"},
        {"status": "success"},
    ]


def test_show_of_a_made_model():
    info = EngineInfo(engine="llama.cpp", model="/m/x.gguf", context_length=512, chat_template="T")
    made = Modelfile(system="Be brief.", template="{{ .Prompt }}", parameters={"num_predict": 3})
    shown = listings.to_show(ModelView(("x",), info, 0, False, None), made)
    assert shown.system == "Be brief." and shown.template == "{{ .Prompt }}"
    assert shown.parameters == "num_ctx 512\nnum_predict 3"
    assert shown.modelfile == (
        "# served by llmkit (llama.cpp)\nFROM /m/x.gguf\n"
        'TEMPLATE """{{ .Prompt }}"""\nSYSTEM """Be brief."""\nPARAMETER num_predict 3\n'
        "PARAMETER num_ctx 512\n"
    )


def test_made_models_are_catalog_entries_found_by_either_name(tmp_path, bundled_path):
    catalog = Catalog(tmp_path)
    entry = derived.create(catalog, "pirate:latest", Path(bundled_path), MF)
    assert entry.name == "pirate" and entry.source == "created"
    assert entry.modelfile == MF
    for name in ("pirate", "pirate:latest"):
        assert catalog.lookup(name) == entry
    v2 = derived.create(catalog, "pirate:v2", Path(bundled_path), None)
    assert v2.name == "pirate:v2" and catalog.lookup("pirate:v2") == v2
    catalog.remove(entry)
    assert catalog.lookup("pirate") is None and catalog.lookup("pirate:v2") == v2
    assert Path(bundled_path).is_file()  # the weights it was made from stay


def test_a_pulled_quantisation_answers_to_its_tag(tmp_path, bundled_path):
    (tmp_path / "org/repo").mkdir(parents=True)
    shutil.copy(bundled_path, tmp_path / "org/repo/repo-Q4_1.gguf")
    (tmp_path / "org/repo/.llmkit.json").write_text('{"repo": "org/repo", "complete": true}')
    catalog = Catalog(tmp_path)
    assert catalog.lookup("org/repo:q4_1") == catalog.lookup("org/repo") is not None
    assert catalog.lookup("org/repo:q8_0") is None


def test_names_that_are_not_model_names_are_refused(tmp_path, bundled_path):
    from llmkit.errors import InvalidRequestError

    for bad in ("../x", "a/b/c", "-x", "x:-v", ".."):
        with pytest.raises(InvalidRequestError):
            derived.create(Catalog(tmp_path), bad, Path(bundled_path), None)


def test_a_pulled_file_whose_digest_differs_is_removed(tmp_path):
    from llmkit.errors import UpstreamError
    from llmkit.models.verify import sha256_of, verify

    (tmp_path / "m.gguf").write_bytes(b"weights")
    (tmp_path / "README.md").write_text("no digest: not checked")
    good = RemoteFile("m.gguf", 7, sha256_of(tmp_path / "m.gguf"))
    assert verify(tmp_path, [good, RemoteFile("README.md", 22)]) == 1
    with pytest.raises(UpstreamError) as e:
        verify(tmp_path, [RemoteFile("m.gguf", 7, "0" * 64)])
    assert "m.gguf arrived corrupted" in e.value.message and not (tmp_path / "m.gguf").exists()
