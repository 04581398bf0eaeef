"""The vLLM engine: the exact command line built from our flags, and the supervision
of the child (start, health wait with a progress line, a crash and the restart,
shutdown) against a stand-in (tests/fake_vllm.py) that takes vLLM's command line
and serves a real OpenAI-compatible API on loopback. Real vLLM is not run here:
it needs a CUDA GPU."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import httpx
import ollama
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.engines.vllm.engine import VLLM_MODULE, build_argv, vllm_command
from llmkit.engines.vllm.spec import VllmOptions
from llmkit.errors import ConfigError
from tests.conftest import Server, start_server

FAKE = Path(__file__).with_name("fake_vllm.py")
STANDIN = f"{sys.executable} {FAKE}"


def test_argv_from_flags_exactly():
    opts = VllmOptions(
        max_model_len=8192,
        dtype="bfloat16",
        tensor_parallel_size=4,
        pipeline_parallel_size=2,
        gpu_memory_utilization=0.85,
        enforce_eager=True,
        distributed_executor_backend="ray",
        vllm_arg=["--max-num-seqs", "64", "--swap-space", "8"],
    )
    cmd = [sys.executable, "-m", VLLM_MODULE]
    argv = build_argv(opts, cmd, model="meta-llama/Llama-3.1-70B-Instruct", served_name="llama",
                      port=9123)  # fmt: skip
    assert argv == [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", "meta-llama/Llama-3.1-70B-Instruct",
        "--served-model-name", "llama",
        "--host", "127.0.0.1", "--port", "9123",
        "--max-model-len", "8192",
        "--dtype", "bfloat16",
        "--tensor-parallel-size", "4",
        "--pipeline-parallel-size", "2",
        "--gpu-memory-utilization", "0.85",
        "--distributed-executor-backend", "ray",
        "--enforce-eager",
        "--max-num-seqs", "64", "--swap-space", "8",
    ]  # fmt: skip
    # What vLLM decides by default is left to it.
    bare = build_argv(VllmOptions(), cmd, model="m", served_name="m", port=1)
    assert bare == [*cmd, "--model", "m", "--served-model-name", "m", "--host", "127.0.0.1",
                    "--port", "1"]  # fmt: skip


def test_missing_vllm_says_how_to_install_it():
    # vLLM is not installed here (it needs a CUDA GPU), which is the case to test.
    with pytest.raises(ConfigError) as e:
        vllm_command(VllmOptions())
    assert "pip install vllm" in e.value.message and "GPU" in e.value.message
    r = CliRunner().invoke(cli, ["serve", "--engine", "vllm", "--model", "org/some-model"])
    assert r.exit_code == 1
    assert "pip install vllm" in r.output and "Traceback" not in r.output


def test_flags_of_other_engines_are_refused_before_anything_runs():
    r = CliRunner().invoke(
        cli, ["serve", "--engine", "vllm", "--model", "m", "--device", "cuda", "--threads", "2"]
    )
    assert r.exit_code == 1
    assert "--device does not apply to the vllm engine" in r.output
    assert "--threads does not apply to the vllm engine" in r.output


@pytest.fixture(scope="module")
def vllm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vllm")


@pytest.fixture(scope="module")
def vserver(vllm_dir: Path) -> Server:
    s = start_server(
        vllm_dir,
        "--engine", "vllm",
        "--model", "SmolLM2-135M-Instruct",
        "--served-model-name", "vmodel",
        "--vllm-command", STANDIN,
        "--max-model-len", "1024",
        "--tensor-parallel-size", "2",
        "--cuda-visible-devices", "0,1",
        "--vllm-arg", "--max-num-seqs", "8",
        env={"FAKE_VLLM_DIR": str(vllm_dir), "FAKE_VLLM_DELAY": "1.5"},
    )  # fmt: skip
    yield s
    s.stop()


def starts(directory: Path) -> list[dict]:
    path = directory / "starts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_starts_vllm_with_that_command_line_and_waits_for_it(vserver, vllm_dir, bundled_path):
    first = starts(vllm_dir)[0]
    argv = [sys.executable, *first["argv"]]
    port = argv[argv.index("--port") + 1]
    assert argv == [
        sys.executable, str(FAKE),
        "--model", bundled_path,
        "--served-model-name", "vmodel",
        "--host", "127.0.0.1", "--port", port,
        "--max-model-len", "1024",
        "--tensor-parallel-size", "2",
        "--max-num-seqs", "8",
    ]  # fmt: skip
    assert first["cuda_visible_devices"] == "0,1"
    log = vserver.log()
    assert f"starting vLLM: {shlex.join(argv)}" in log
    assert f"waiting for vLLM (pid {first['pid']}) to load" in log  # the progress line
    assert "stand-in vLLM for" in log  # its own log, forwarded
    assert "serving vmodel on vllm" in log


def test_vllm_model_gets_both_apis_and_tokenize(vserver):
    client = vserver.client()
    models = client.models.list().data
    assert [(m.id, m.model_extra["max_model_len"]) for m in models] == [("vmodel", 1024)]
    chat = client.chat.completions.create(
        model="vmodel",
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=8,
        temperature=0,
    )
    assert chat.choices[0].message.content and chat.usage.completion_tokens == 8

    o = ollama.Client(host=vserver.url)
    reply = o.chat(
        model="vmodel",
        messages=[{"role": "user", "content": "Name three colours."}],
        options={"num_predict": 8, "temperature": 0},
    )
    assert reply.message.content == chat.choices[0].message.content
    gen = o.generate(model="vmodel", prompt="Roses are", options={"num_predict": 4})
    assert gen.response and gen.context  # token ids through vLLM's /tokenize
    assert "vmodel:latest" in [m.model for m in o.ps().models]  # as Ollama lists it

    tok = httpx.post(vserver.url + "/tokenize", json={"model": "vmodel", "prompt": "Hi there"})
    assert tok.status_code == 200 and tok.json()["count"] == 2


def test_a_crash_of_vllm_is_reported_and_restarted(vserver, vllm_dir):
    before = starts(vllm_dir)
    (vllm_dir / "crash").touch()
    deadline = time.monotonic() + 20
    while httpx.get(vserver.url + "/health").status_code == 200:
        assert time.monotonic() < deadline, "the crash was not noticed"
        time.sleep(0.1)
    r = httpx.post(
        vserver.v1 + "/chat/completions",
        json={"model": "vmodel", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert r.status_code == 503 and "vLLM is restarting" in r.json()["error"]["message"]
    assert "illegal memory access" in r.json()["error"]["message"]  # the child's last error
    deadline = time.monotonic() + 90
    while httpx.get(vserver.url + "/health").status_code != 200:
        assert time.monotonic() < deadline, vserver.log()
        time.sleep(0.3)
    after = starts(vllm_dir)
    assert len(after) == len(before) + 1 and after[-1]["pid"] != before[-1]["pid"]
    assert "vLLM exited with code 1: RuntimeError: CUDA error" in vserver.log()
    chat = vserver.client().chat.completions.create(
        model="vmodel", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert chat.usage.completion_tokens == 4


def test_shutdown_stops_vllm(vllm_dir, tmp_path):
    s = start_server(
        tmp_path,
        "--engine", "vllm", "--model", "SmolLM2-135M-Instruct", "--vllm-command", STANDIN,
        env={"FAKE_VLLM_DIR": str(tmp_path)},
    )  # fmt: skip
    pid = starts(tmp_path)[-1]["pid"]
    os.kill(pid, 0)  # running
    assert s.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "stopping vLLM" in s.log()


def test_vllm_does_not_outlive_a_killed_server(tmp_path):
    """kill -9 gives llmkit no chance to stop its child: the kernel does it."""
    s = start_server(
        tmp_path,
        "--engine", "vllm", "--model", "SmolLM2-135M-Instruct", "--vllm-command", STANDIN,
        env={"FAKE_VLLM_DIR": str(tmp_path)},
    )  # fmt: skip
    pid = starts(tmp_path)[-1]["pid"]
    s.stop(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pid):
        assert time.monotonic() < deadline, "the vLLM child outlived the server"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not yet reaped is a zombie: gone for our purpose.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def test_vllm_that_fails_to_load_ends_serve_with_its_error(tmp_path):
    r = CliRunner().invoke(
        cli,
        ["serve", "--engine", "vllm", "--model", "SmolLM2-135M-Instruct", "--vllm-command",
         STANDIN, "--port", "0"],
        env={"FAKE_VLLM_DIR": str(tmp_path), "FAKE_VLLM_FAIL": "No CUDA GPUs are available",
             "LLMKIT_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert r.exit_code == 1, r.output
    assert (
        "vllm exited with code 1 before it was ready: ValueError: No CUDA GPUs are available"
        in r.output
    )


def test_a_stuck_vllm_is_killed_and_the_restart_budget_is_per_window(tmp_path):
    """Alive but deaf (SIGSTOP): three missed probes (each unanswered within the
    interval) and it is replaced. Restarts
    count within --restart-window only: one allowed, a crash after the window is
    restarted again, a second crash inside it leaves the engine failed."""
    s = start_server(
        tmp_path,
        "--engine", "vllm", "--model", "SmolLM2-135M-Instruct", "--vllm-command", STANDIN,
        "--health-interval", "1", "--max-restarts", "1", "--restart-window", "6",
        env={"FAKE_VLLM_DIR": str(tmp_path)},
    )  # fmt: skip

    def wait_for(n_starts: int) -> None:
        deadline = time.monotonic() + 90
        while len(starts(tmp_path)) < n_starts or httpx.get(s.url + "/health").status_code != 200:
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.2)

    try:
        os.kill(starts(tmp_path)[-1]["pid"], signal.SIGSTOP)
        wait_for(2)
        assert "vLLM stopped answering /health (3 probes in a row" in s.log()
        first_restart = time.monotonic()
        # The window passes: the restart was counted before its pause and launch,
        # so the window's length from here is past it.
        while time.monotonic() - first_restart < 6:
            time.sleep(0.2)
        (tmp_path / "crash").touch()
        wait_for(3)  # a crash outside the window: restarted again
        (tmp_path / "crash").touch()
        deadline = time.monotonic() + 30
        while "not restarting it again" not in s.log():
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.2)
        assert httpx.get(s.url + "/health").json()["models"][0]["state"] == "failed"
        assert len(starts(tmp_path)) == 3
    finally:
        s.stop()
