"""Fit before fetch: ``llmkit mem REPO`` and ``llmkit pull`` size a GGUF
repository's quantisations from ranged reads of their headers (the real
huggingface_hub / modelscope adapters against stand-in hubs on loopback), take
the largest that fits with ``--fit``, and refuse what cannot fit before a byte
of its file moves; the stand-in hub's request log proves what was fetched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.env import ModelsSettings
from llmkit.models.download import hub_for
from llmkit.models.remote_fit import FIRST_READ, read_remote_header
from llmkit.models.sizing import format_bytes
from tests.conftest import free_port
from tests.standin_hub import StandinHub
from tests.tiny_models import declared_gguf

REPO = "org/big-GGUF"
# Each file is its header (about 15 KB) and 1.5 MB standing in for the weights:
# more than the first ranged read, so a whole-file GET shows in the byte counts.
BODY = 1_500_000
FILES = {"big-f16.gguf": "F16", "big-q8_0.gguf": "Q8_0", "big-q4_k_m.gguf": "Q4_K"}


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, bytes]]:
    files = {name: declared_gguf(q, body=BODY) for name, q in FILES.items()}
    return {REPO: {**files, "README.md": b"---\nlicense: mit\n---\n"}}


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch) -> Path:
    for name in ("HF_ENDPOINT", "MODELSCOPE_ENDPOINT", "LLMKIT_HF_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMKIT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    # The declared model needs 2.12 GiB in F16, 1.22 GiB in Q8_0, 0.73 GiB in Q4_K_M
    # at its 4096-token context: with 1.5 GiB, the two smaller fit.
    monkeypatch.setenv("LLMKIT_MEMORY_GIB", "1.5")
    return tmp_path / "models"


def use(hub: StandinHub, monkeypatch) -> None:
    var = "HF_ENDPOINT" if hub.flavour == "hf" else "MODELSCOPE_ENDPOINT"
    monkeypatch.setenv(var, hub.url)
    monkeypatch.setenv("LLMKIT_SOURCES", hub.flavour)


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def header_reads_only(hub: StandinHub, name: str, size: int) -> None:
    """Every GET of ``name`` was a ranged read of its start, and less than the file went."""
    gets = hub.gets(name)
    assert gets, f"{name} was never read"
    assert all(g.range == f"bytes=0-{FIRST_READ - 1}" for g in gets), gets
    assert hub.sent[name] == FIRST_READ < size


@pytest.mark.parametrize("flavour", ["hf", "modelscope"])
def test_mem_sizes_each_quantisation_from_its_header(repos, env, monkeypatch, flavour):
    with StandinHub(flavour, repos) as hub:
        use(hub, monkeypatch)
        result = invoke("mem", REPO)
    assert result.exit_code == 0, result.output
    files = repos[REPO]
    size = {n: format_bytes(len(files[n])) for n in FILES}
    assert result.output.splitlines() == [
        f"{REPO}: llama, trained for 4096 tokens",
        "  QUANT   FILE             SIZE      NEEDS       FITS",
        f"  Q4_K_M  big-q4_k_m.gguf  {size['big-q4_k_m.gguf']}  750.90 MiB  yes",
        f"  Q8_0    big-q8_0.gguf    {size['big-q8_0.gguf']}  1.22 GiB    yes",
        f"  F16     big-f16.gguf     {size['big-f16.gguf']}  2.12 GiB    no",
        "budget 1.50 GiB (LLMKIT_MEMORY_GIB), at 4096 tokens; headers read: "
        + format_bytes(3 * FIRST_READ),
        f"largest that fits: Q8_0 (`llmkit pull {REPO} --fit` takes it)",
    ]
    for name in FILES:
        header_reads_only(hub, name, len(files[name]))
    assert not env.exists() or not any(env.rglob("*.gguf"))
    if flavour == "hf":  # the same, for scripts
        with StandinHub(flavour, repos) as again:
            use(again, monkeypatch)
            out = json.loads(invoke("mem", REPO, "--json").output)
        assert out["largest_fitting"] == "Q8_0" and out["context"] == 4096
        assert [(q["quantization"], q["fits"]) for q in out["quantizations"]] == [
            ("Q4_K_M", True), ("Q8_0", True), ("F16", False)
        ]  # fmt: skip


@pytest.mark.parametrize("flavour", ["hf", "modelscope"])
def test_pull_fit_takes_the_largest_quantisation_that_fits(repos, env, monkeypatch, flavour):
    with StandinHub(flavour, repos) as hub:
        use(hub, monkeypatch)
        result = invoke("pull", REPO, "--fit")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "taking Q8_0, the largest quantisation that fits" in lines
    assert lines[-1].startswith(f"pulled {REPO} (")
    assert lines[-1].endswith(f"into {env}/{REPO}/big-q8_0.gguf")
    files = repos[REPO]
    assert (env / REPO / "big-q8_0.gguf").read_bytes() == files["big-q8_0.gguf"]
    # The others: their headers and nothing more; not even README.md.
    for name in ("big-f16.gguf", "big-q4_k_m.gguf"):
        header_reads_only(hub, name, len(files[name]))
        assert not (env / REPO / name).exists()
    assert not hub.gets("README.md")
    # The chosen one: its header first, then the whole file, once.
    chosen = hub.gets("big-q8_0.gguf")
    assert chosen[0].range == f"bytes=0-{FIRST_READ - 1}"
    assert hub.sent["big-q8_0.gguf"] == FIRST_READ + len(files["big-q8_0.gguf"])


def test_a_pull_that_cannot_fit_is_refused_before_a_byte_of_it_moves(repos, env, monkeypatch):
    monkeypatch.setenv("LLMKIT_MEMORY_GIB", "0.5")
    with StandinHub("hf", repos) as hub:
        use(hub, monkeypatch)
        refused = invoke("pull", REPO, "--fit")
        sent_when_refused = dict(hub.sent)
        on_disk_when_refused = list(env.rglob("*.gguf*"))
        one = invoke("pull", REPO, "--include", "*f16*")
        forced = invoke("pull", REPO, "--include", "*q4_k_m*", "--force")
    assert refused.exit_code == 1
    assert refused.output.splitlines()[-1] == (
        f"Error: {REPO} does not fit: the smallest, Q4_K_M, needs 750.90 MiB (weights "
        "557.41 MiB + KV cache 128.00 MiB for 4096 tokens + overhead 65.48 MiB), but only "
        "512.00 MiB is there (LLMKIT_MEMORY_GIB). Nothing was downloaded. Try a smaller "
        "model or quantisation (`llmkit mem REPO` lists them), a shorter --max-model-len, "
        "or --force to pull it anyway."
    )
    # Only the three headers went: no file body, nothing on disk.
    assert sent_when_refused == {name: FIRST_READ for name in FILES}
    assert on_disk_when_refused == []
    assert one.exit_code == 1
    assert one.output.splitlines()[-1].startswith(
        f"Error: {REPO} (F16) does not fit: F16 needs 2.12 GiB (weights 1.93 GiB + "
    )
    assert not (env / REPO / "big-f16.gguf").exists()
    # --force: no header read at all, the file as asked.
    assert forced.exit_code == 0, forced.output
    assert (env / REPO / "big-q4_k_m.gguf").read_bytes() == repos[REPO]["big-q4_k_m.gguf"]


def test_run_of_a_model_that_cannot_fit_is_refused_before_a_byte_of_it_moves(
    repos, env, monkeypatch
):
    """``llmkit run`` (no server running) pulls what is not here as ``pull --fit``
    does: a model too big for the budget is refused with only its headers read."""
    monkeypatch.setenv("LLMKIT_MEMORY_GIB", "0.5")
    monkeypatch.delenv("LLMKIT_URL", raising=False)
    with StandinHub("hf", repos) as hub:
        use(hub, monkeypatch)
        refused = CliRunner().invoke(cli, ["run", REPO, "Hello"])
        sent = dict(hub.sent)
    assert refused.exit_code == 1, refused.output
    assert f"{REPO} does not fit: the smallest, Q4_K_M, needs 750.90 MiB" in refused.output
    assert "Nothing was downloaded." in refused.output and "Traceback" not in refused.output
    assert sent == {name: FIRST_READ for name in FILES}
    assert list(env.rglob("*.gguf*")) == []


def test_a_header_longer_than_the_first_read_is_read_on(env, tmp_path):
    """A vocabulary of 2000 strings makes a header of about 50 KB: read in growing pieces,
    each starting where the last ended, and stopping when the header is whole."""
    data = declared_gguf("Q8_0", tokens=2000, body=BODY)
    with StandinHub("hf", {REPO: {"long.gguf": data}}) as hub:
        settings = ModelsSettings(hf_endpoint=hub.url, sources=["hf"])
        hf = hub_for("hf", settings)
        revision, listing = hf.list_files(REPO, None)
        facts, fetched = read_remote_header(hf, REPO, revision, listing[0], first=4096)
    ranges = [g.range for g in hub.gets("long.gguf")]
    assert ranges == [
        "bytes=0-4095", "bytes=4096-8191", "bytes=8192-16383", "bytes=16384-32767",
        "bytes=32768-65535",
    ]  # fmt: skip
    assert fetched == hub.sent["long.gguf"] == 65536 < len(data)
    assert (facts.quantization, facts.n_layers, facts.context_length) == ("Q8_0", 16, 4096)


def test_no_library_warnings_when_sources_are_down(repos, env, monkeypatch, capfd):
    """Both sources down: llmkit says once per source what failed, in its own
    words; nothing of huggingface_hub's or modelscope's own logging shows."""
    dead_hf, dead_ms = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    monkeypatch.setenv("HF_ENDPOINT", dead_hf)
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", dead_ms)
    for args in (("pull", REPO, "--source", "hf,modelscope"), ("mem", REPO)):
        monkeypatch.setenv("LLMKIT_SOURCES", "hf,modelscope")
        result = invoke(*args)
        assert result.exit_code == 1
        # The libraries' handlers write to the process's stderr, not click's.
        assert capfd.readouterr() == ("", "")
        refused = "ConnectionRefusedError: [Errno 111] Connection refused"
        if args[0] == "pull":
            assert result.output.splitlines() == [
                f"pulling {REPO} from hf ({dead_hf})",
                f"hf failed: unreachable: {refused}",
                f"pulling {REPO} from modelscope ({dead_ms})",
                f"modelscope failed: unreachable: {refused}",
                f"Error: Could not pull {REPO}: hf ({dead_hf}) unreachable: {refused}; "
                f"modelscope ({dead_ms}) unreachable: {refused}.",
            ]
        else:
            assert result.output.splitlines() == [
                f"Error: Could not size {REPO}: hf ({dead_hf}) unreachable: {refused}; "
                f"modelscope ({dead_ms}) unreachable: {refused}."
            ]


def test_a_safetensors_repository_is_judged_by_its_config(env, monkeypatch):
    """No GGUF: config.json (read with a ranged GET) says the shape; the weights stay put."""
    from tests.tiny_models import hf_repo

    files = hf_repo()
    monkeypatch.setenv("LLMKIT_MEMORY_GIB", "0.01")  # below the GPU runtime's own overhead
    with StandinHub("hf", {"org/tiny": files}) as hub:
        use(hub, monkeypatch)
        refused = invoke("pull", "org/tiny")
    assert refused.exit_code == 1
    assert refused.output.splitlines()[-1].startswith(
        "Error: org/tiny (float32) does not fit: float32 needs "
    )
    assert [g.range for g in hub.gets("config.json")] == [
        f"bytes=0-{len(files['config.json']) - 1}"
    ]
    assert not hub.gets("model.safetensors") and "model.safetensors" not in hub.sent


def test_the_library_call_with_fit_on(repos, env):
    """``pull(req, settings, fn, fit=True)``, as ``llmkit run`` and /api/pull call it:
    the budget from the settings, the choice reported to the progress callback."""
    from llmkit.models.download import PullRequest, pull

    events = []
    with StandinHub("hf", repos) as hub:
        settings = ModelsSettings(hf_endpoint=hub.url, sources=["hf"], memory_gib=1.5)
        entries = pull(PullRequest(REPO), settings, events.append, fit=True)
    assert [e.path.name for e in entries] == ["big-q8_0.gguf"]
    fit = next(e for e in events if e.status == "fit")
    assert fit.message == "Q8_0" and fit.report is not None
    assert [(q.label, q.fits) for q in fit.report.quants] == [
        ("Q4_K_M", True), ("Q8_0", True), ("F16", False)
    ]  # fmt: skip
    assert [e.status for e in events].index("fit") < [e.status for e in events].index("files")
