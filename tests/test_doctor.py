"""``llmkit doctor`` in a test environment: every check's line and mark, the
advice under a failing one and the exit code. The hubs are a stand-in hub on
loopback and a closed port; the server is the session's real ``llmkit serve``;
the store a real SQLite file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import llama_cpp
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import llmkit
from llmkit.cli.main import cli
from llmkit.engines.llamacpp.build_info import BuildInfo, features
from llmkit.engines.llamacpp.doctor import judge_build
from llmkit.memory.migrations import MIGRATIONS
from llmkit.memory.store import Store
from tests.conftest import free_port
from tests.standin_hub import StandinHub

SHIPPED = [fn.__name__ for fn in MIGRATIONS]

CLOSED = f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture()
def hub() -> StandinHub:
    with StandinHub("hf", {}) as h:
        yield h


@pytest.fixture()
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: StandinHub) -> Path:
    """A data directory with a store of one conversation; hf answers, modelscope not."""
    for var in ("LLMKIT_URL", "LLMKIT_STORE", "LLMKIT_MODELS", "LLMKIT_MEMORY_GIB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMKIT_SOURCES", "hf,modelscope")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", CLOSED)
    store = Store(f"sqlite:///{tmp_path / 'home' / 'llmkit.db'}")
    store.create("work", model="smol")
    store.close()
    return tmp_path


def doctor(*args: str) -> tuple[int, dict[str, str]]:
    r = CliRunner().invoke(cli, ["doctor", *args])
    lines = r.output.splitlines()
    by_name: dict[str, str] = {}
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        if m := re.match(r"([✓!✗·]) (\S+(?: \S+)?)\s{2,}(.*)", line):
            advice = after.strip().removeprefix("→ ") if after.strip().startswith("→") else ""
            by_name[m.group(2)] = f"{m.group(1)} {m.group(3)}" + (f" => {advice}" if advice else "")
    by_name["summary"] = lines[-1]
    return r.exit_code, by_name


def test_a_healthy_machine(machine, server, hub):
    code, got = doctor("--url", server.url)
    home = machine / "home"
    assert got["llama.cpp"].startswith(f"✓ llama-cpp-python {llama_cpp.__version__}; ")
    # the project's own build (scripts/bootstrap.sh) has both patches
    kernels = "; AMX kernels off; llmkit's attention and Q4_1 column kernels"
    assert got["llama.cpp"].endswith(kernels)
    assert re.fullmatch(r"✓ [\d.]+ GiB total, [\d.]+ GiB available", got["memory"])
    assert re.fullmatch(rf"✓ {re.escape(str(home))} \(writable; [\d.]+ \w+ free\)", got["data dir"])
    assert got["models dir"].startswith(f"✓ {home / 'models'} (not created yet; will be on")
    assert re.fullmatch(
        rf"✓ sqlite:///{re.escape(str(home))}/llmkit.db: 1 conversations, [\d.]+ KiB, "
        rf"schema {len(SHIPPED)} \({re.escape(', '.join(SHIPPED))}\)",
        got["store"],
    )
    assert got["server"] == (
        f"✓ {server.url}: version llmkit {llmkit.__version__} (Ollama API 0.12.0), "
        "models SmolLM2-135M-Instruct:latest, smol:latest"
    )
    assert got["hub hf"] == f"✓ {hub.url} answers"
    # One hub down is a warning: pull falls back to the other.
    assert got["hub modelscope"] == (
        f"! {CLOSED} unreachable (ConnectError) => pull falls back to the next source"
    )
    assert code == 0 and got["summary"] == "All checks passed."

    r = CliRunner().invoke(cli, ["doctor", "--url", server.url, "--json"])
    checks = {c["name"]: c for c in json.loads(r.output)}
    assert r.exit_code == 0 and set(checks) == set(got) - {"summary"}
    assert checks["hub modelscope"] == {
        "status": "warn",
        "name": "hub modelscope",
        "detail": f"{CLOSED} unreachable (ConnectError)",
        "advice": "pull falls back to the next source",
    }


def test_failing_checks_say_what_to_do_and_exit_1(machine, monkeypatch):
    blocker = machine / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LLMKIT_MODELS", str(blocker / "models"))
    monkeypatch.setenv("LLMKIT_SOURCES", "modelscope")
    code, got = doctor()
    assert got["models dir"] == (
        f"✗ {blocker / 'models'}: {blocker} is not a directory => make it writable "
        f"(chmod u+w {blocker}) or point LLMKIT_MODELS at a writable folder"
    )
    assert got["server"] == "· none running (`llmkit serve` starts one)"
    assert got["hub modelscope"].startswith(f"✗ {CLOSED} unreachable (ConnectError) => ")
    assert "`llmkit pull` cannot fetch anything" in got["hub modelscope"]
    assert code == 1 and got["summary"] == "2 check(s) failed."


def test_a_store_from_a_newer_llmkit_and_an_unreachable_server(machine):
    with sa.create_engine(f"sqlite:///{machine / 'home' / 'llmkit.db'}").begin() as conn:
        conn.execute(sa.text("INSERT INTO _llmkit_migrations VALUES ('m999_future', '2030-01-01')"))
    code, got = doctor("--url", CLOSED)
    applied = ", ".join([*SHIPPED, "m999_future"])
    assert (
        f"schema {len(SHIPPED) + 1} ({applied}); written by a newer llmkit (m999_future)"
        in (got["store"])
    )
    assert got["store"].startswith("✗ ") and got["store"].endswith(
        "=> upgrade llmkit, or point LLMKIT_STORE at another store"
    )
    assert got["server"].startswith(f"✗ {CLOSED} does not answer: Cannot reach {CLOSED}")
    assert got["server"].endswith("=> start it with `llmkit serve`, or check the address")
    assert code == 1


@pytest.mark.parametrize(
    ("system_info", "on", "amx"),
    [
        ("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | OPENMP = 1 | ", ["SSE3", "AVX2", "OPENMP"], []),
        (
            "CPU : AVX512 = 1 | AMX_INT8 = 1 | AMX_BF16 = 0 | ",
            ["AVX512", "AMX_INT8"],
            ["AMX_INT8"],
        ),
    ],
)
def test_features_read_from_llama_cpp_system_info(system_info, on, amx):
    assert features(system_info) == on
    info = BuildInfo("0.3.36", system_info)
    assert info.amx == amx
    # A build with AMX kernels on (one built elsewhere) fails, with how to rebuild it.
    check = judge_build(info)
    if amx:
        assert check.status == "fail" and check.detail.endswith("; AMX kernels ON (AMX_INT8)")
        assert "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in check.advice
        assert "llama-cpp-python==0.3.36" in check.advice
    else:
        assert (check.status, check.advice) == ("ok", "")
        assert check.detail == "llama-cpp-python 0.3.36; CPU features: SSE3, AVX2, OPENMP; " + (
            "AMX kernels off; llmkit's attention and Q4_1 column kernels"
        )
    # A plain pip build, without the attention patch: a warning that says what it costs.
    plain = judge_build(BuildInfo("0.3.36", system_info, packed_attention=False))
    if not amx:
        assert plain.status == "warn" and plain.detail.endswith("without llmkit's attention kernel")
        assert "8-bit cells" in plain.advice and "scripts/bootstrap.sh" in plain.advice
    # A build of the attention patch alone: a warning that says what the other costs.
    older = judge_build(BuildInfo("0.3.36", system_info, column_matmul=False))
    if not amx:
        assert older.status == "warn" and older.detail.endswith("without its Q4_1 column kernel")
        assert "speculative" in older.advice and "scripts/bootstrap.sh" in older.advice
