"""``llmkit pull`` with the real huggingface_hub and modelscope clients against
stand-in hubs on loopback (tests/standin_hub.py): picking files, resuming a cut
transfer and a killed pull, falling back from a source that is down, a
repository that does not exist, short names, and sizing a repo not pulled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.env import ModelsSettings
from llmkit.models.download import PullRequest, pull
from llmkit.models.sizing import format_bytes
from tests import standin_hub
from tests.conftest import free_port
from tests.standin_hub import StandinHub
from tests.test_sizing import QWEN2_7B
from tests.tiny_models import hf_repo, tiny_gguf

BIG = 49152  # vocabulary giving a 12.6 MB safetensors file: more than one 10 MiB HF chunk


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, bytes]]:
    import json

    return {
        "org/tiny": hf_repo(vocab=BIG),
        "org/tiny-GGUF": {
            "tiny-q8_0.gguf": tiny_gguf("Q8_0"),
            "tiny-f16.gguf": tiny_gguf("F16"),
            "README.md": b"---\nlicense: mit\n---\n",
        },
        "Qwen/Qwen2-0.5B-Instruct-GGUF": {"qwen2-0_5b-instruct-q8_0.gguf": tiny_gguf("Q8_0")},
        "Qwen/Qwen2-7B-Instruct": {"config.json": json.dumps(QWEN2_7B).encode()},
    }


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch) -> Path:
    for name in ("HF_ENDPOINT", "MODELSCOPE_ENDPOINT", "LLMKIT_SOURCES", "LLMKIT_HF_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMKIT_MODELS", str(tmp_path / "models"))
    # The hubs' own caches, so nothing is read from or written to the real home.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    return tmp_path / "models"


def invoke(*args: str, **kw):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **kw)


def test_pull_one_quantisation_out_of_many(repos, env, monkeypatch):
    with StandinHub("hf", repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # honoured as huggingface_hub does
        result = invoke("pull", "org/tiny-GGUF", "--source", "hf", "--include", "*Q8_0.gguf")
    data = repos["org/tiny-GGUF"]["tiny-q8_0.gguf"]
    size = format_bytes(len(data))
    assert result.exit_code == 0
    assert result.output == (
        f"pulling org/tiny-GGUF from hf ({hub.url})\n"
        f"1 file, {size}\n"
        f"  done tiny-q8_0.gguf ({size})\n"
        f"pulled org/tiny-GGUF ({size}) into {env}/org/tiny-GGUF/tiny-q8_0.gguf\n"
    )
    assert (env / "org/tiny-GGUF/tiny-q8_0.gguf").read_bytes() == data
    assert not hub.gets("tiny-f16.gguf") and not (env / "org/tiny-GGUF/tiny-f16.gguf").exists()
    listing = invoke("list").output.splitlines()
    assert listing[2].split() == ["org/tiny-GGUF", "gguf", "90.4K", "Q8_0", *size.split(), "512",
                                  "hf"]  # fmt: skip


@pytest.mark.parametrize("flavour", ["hf", "modelscope"])
def test_a_cut_transfer_resumes_from_where_it_stopped(repos, env, flavour):
    """The hub drops the connection 11 MB into the weights; the client asks for the
    rest with a Range request and the file ends up byte for byte the same."""
    with StandinHub(flavour, repos, drop_after={"model.safetensors": 11_000_000}) as hub:
        settings = ModelsSettings(hf_endpoint=hub.url, modelscope_endpoint=hub.url)
        pull(PullRequest("org/tiny", sources=(flavour,)), settings)
    gets = hub.gets("model.safetensors")
    assert gets[0].range is None
    resumed = [g.range for g in gets if g.range]
    assert resumed and int(resumed[0].removeprefix("bytes=").rstrip("-")) > 0
    assert (env / "org/tiny/model.safetensors").read_bytes() == repos["org/tiny"][
        "model.safetensors"]  # fmt: skip


@pytest.mark.parametrize("flavour", ["hf", "modelscope"])
def test_a_killed_pull_resumes_on_the_next_pull(repos, env, tmp_path, flavour):
    """The partial file of a pull that was killed stays; the next pull asks only
    for the bytes after it."""
    if flavour == "hf":
        from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

        endpoint_var = "HF_ENDPOINT"
        held = DOWNLOAD_CHUNK_SIZE  # one whole chunk, so it reaches the disk
    else:
        from modelscope_hub.constants import DOWNLOAD_CHUNK_SIZE

        endpoint_var = "MODELSCOPE_ENDPOINT"
        held = 5 * DOWNLOAD_CHUNK_SIZE
    with StandinHub(flavour, repos, hold_after={"model.safetensors": held}) as hub:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmkit", "pull", "org/tiny", "--source", flavour],
            env={**os.environ, endpoint_var: hub.url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        partial = env / "org/tiny/model.safetensors.incomplete"
        deadline = time.monotonic() + 120
        # The hub holds the transfer after ``held`` bytes; kill once the partial file
        # has stopped growing (the client may still buffer its last few KiB).
        size, still = -1, 0
        while not (hub.holding.is_set() and size > 0 and still >= 10):
            assert time.monotonic() < deadline and proc.poll() is None, "never got that far"
            time.sleep(0.1)
            now = partial.stat().st_size if partial.exists() else -1
            size, still = now, (still + 1 if now == size else 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        hub.release.set()
        assert "(incomplete)" in invoke("list").output
        result = invoke("pull", "org/tiny", "--source", flavour, env={endpoint_var: hub.url})
    assert result.exit_code == 0, result.output
    first, *resumed = [g.range for g in hub.gets("model.safetensors")]
    # modelscope_hub may retry a ranged GET on a slow, busy machine; every retry
    # still starts where the killed pull stopped on disk, never from byte 0.
    assert 0 < size <= held
    assert first is None and resumed and set(resumed) == {f"bytes={size}-"}, resumed
    data = repos["org/tiny"]["model.safetensors"]
    assert (env / "org/tiny/model.safetensors").read_bytes() == data
    assert not partial.exists() and "(incomplete)" not in invoke("list").output


def test_pulling_again_fetches_only_what_is_missing(repos, env):
    with StandinHub("hf", repos) as hub:
        settings = ModelsSettings(hf_endpoint=hub.url, sources=["hf"])
        pull(PullRequest("org/tiny"), settings)
        (env / "org/tiny/config.json").unlink()
        hub.seen.clear()
        events = []
        pull(PullRequest("org/tiny"), settings, events.append)
    downloads = [s.path.rsplit("/", 1)[-1] for s in hub.seen if "/resolve/" in s.path]
    assert downloads == ["config.json"]  # the missing file, nothing else
    # The callback saw the plan, then each file to its last byte.
    plan = next(e for e in events if e.status == "files")
    assert sorted(f.path for f in plan.files) == sorted(
        p for p in repos["org/tiny"] if not p.startswith(".")
    )
    assert plan.total == sum(f.size for f in plan.files)
    last = {e.file: e.completed for e in events if e.status == "downloading"}
    assert last == {f.path: f.size for f in plan.files}
    assert events[-1].status == "success"


def test_a_source_that_is_down_falls_back_to_the_next(repos, env, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    with StandinHub("modelscope", repos) as ms:
        monkeypatch.setenv("HF_ENDPOINT", dead)
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms.url)
        monkeypatch.setenv("LLMKIT_SOURCES", "hf,modelscope")  # the order, configured
        result = invoke("pull", "org/tiny-GGUF")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[:4] == [
        f"pulling org/tiny-GGUF from hf ({dead})",
        "hf failed: unreachable: ConnectionRefusedError: [Errno 111] Connection refused",
        f"pulling org/tiny-GGUF from modelscope ({ms.url})",
        "3 files, " + format_bytes(sum(len(b) for b in repos["org/tiny-GGUF"].values())),
    ]
    files = repos["org/tiny-GGUF"]
    assert [line for line in lines if line.startswith("pulled")] == [
        f"pulled org/tiny-GGUF:{tag} ({format_bytes(len(files[name]))}) into "
        f"{env}/org/tiny-GGUF/{name}"
        for tag, name in (("f16", "tiny-f16.gguf"), ("q8_0", "tiny-q8_0.gguf"))
    ]
    assert "modelscope" in invoke("list").output.splitlines()[2].split()


def test_a_repository_that_does_not_exist(repos, env, monkeypatch):
    with StandinHub("hf", repos) as hf, StandinHub("modelscope", repos) as ms:
        monkeypatch.setenv("HF_ENDPOINT", hf.url)
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms.url)
        result = invoke("pull", "org/nope", "--source", "hf,modelscope")
    assert result.exit_code == 1
    assert result.output == (
        f"pulling org/nope from hf ({hf.url})\n"
        "hf failed: repository 'org/nope' not found (or not public)\n"
        f"pulling org/nope from modelscope ({ms.url})\n"
        "modelscope failed: repository 'org/nope' not found (or not public)\n"
        f"Error: Could not pull org/nope: hf ({hf.url}) repository 'org/nope' not found (or not "
        f"public); modelscope ({ms.url}) repository 'org/nope' not found (or not public).\n"
    )
    assert not (env / "org/nope").exists()


def test_patterns_that_match_nothing(repos, env, monkeypatch):
    with StandinHub("hf", repos) as hub:
        monkeypatch.setenv("LLMKIT_HF_MIRROR", hub.url)
        result = invoke("pull", "org/tiny-GGUF", "--source", "hf-mirror", "--include", "*q2_k*")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: No file of org/tiny-GGUF matches --include *q2_k*. "
        "Its files: tiny-q8_0.gguf, tiny-f16.gguf, README.md."
    )


def test_short_names_and_the_mirror(repos, env, monkeypatch):
    with StandinHub("hf", repos) as hub:
        monkeypatch.setenv("LLMKIT_HF_MIRROR", hub.url)
        result = invoke("pull", "qwen2-0.5b-instruct-gguf", "--source", "hf-mirror")
    assert result.exit_code == 0
    assert result.output.splitlines()[-1].startswith("pulled Qwen/Qwen2-0.5B-Instruct-GGUF (")
    shown = invoke("show", "qwen2-0.5b-instruct-gguf").output.splitlines()
    assert shown[0] == "name           Qwen/Qwen2-0.5B-Instruct-GGUF"
    assert "quantisation   Q8_0" in shown


def test_mem_of_a_repository_not_pulled(repos, env, monkeypatch):
    """Only config.json is fetched, to a temporary directory."""
    with StandinHub("hf", repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("LLMKIT_SOURCES", "hf")
        result = invoke("mem", "Qwen/Qwen2-7B-Instruct", "--dtype", "float16",
                        "--gpu-memory", "16")  # fmt: skip
    lines = result.output.splitlines()
    assert lines[0] == "Qwen/Qwen2-7B-Instruct: qwen2, 7.6B parameters (estimated from config.json)"
    assert lines[-2] == "does not fit: 16.88 GiB > 16.00 GiB (--gpu-memory 16)"
    assert lines[-1].startswith("to fit, try: --max-model-len 15360 (15.96 GiB); or --dtype int8")
    assert not env.exists() or not any(env.rglob("config.json"))


def test_files_already_in_hugging_faces_cache_are_not_downloaded(repos, env, tmp_path):
    with StandinHub("hf", repos) as hub:
        settings = ModelsSettings(hf_endpoint=hub.url, sources=["hf"])
        pull(PullRequest("org/tiny"), settings)
        # What `huggingface-cli download` would have left in HF_HOME for this commit.
        snapshot = tmp_path / "hf/hub/models--org--tiny/snapshots" / standin_hub.SHA
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_bytes(repos["org/tiny"]["config.json"])
        (env / "org/tiny/config.json").unlink()
        hub.seen.clear()
        pull(PullRequest("org/tiny"), settings)
    assert not [s for s in hub.seen if "/resolve/" in s.path]
    assert (env / "org/tiny/config.json").read_bytes() == repos["org/tiny"]["config.json"]
