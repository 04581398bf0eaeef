"""``llmkit run MODEL [PROMPT]`` as a script uses it: against a running ``llmkit
serve`` (found through the data directory), the model is pulled by the server
(from a stand-in Hugging Face hub on loopback) and loaded there; without one, it
is pulled here and served in-process. The answer is printed plainly; exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, start_server
from tests.standin_hub import StandinHub

LLMKIT = [sys.executable, "-m", "llmkit"]
REPO = "org/smol-GGUF"


@pytest.fixture(scope="module")
def hub(bundled_path: str):
    data = Path(bundled_path).read_bytes()
    with StandinHub("hf", {REPO: {"smol-q4_1.gguf": data}}) as h:
        yield h


def run(home: Path, *args: str, stdin: str | None = None, **env: str):
    mine = ("LLMKIT_URL", "LLMKIT_API_KEY", "LLMKIT_MODELS")  # none from the calling shell
    full = {k: v for k, v in os.environ.items() if k not in mine}
    full.update(LLMKIT_HOME=str(home), **env)
    # No piped text: stdin is empty and closed, not whatever the test runner holds.
    given = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(
        [*LLMKIT, "run", *args], env=full, capture_output=True, text=True, timeout=300, **given
    )


def test_run_against_a_running_server_pulls_and_loads_the_model_there(tmp_path, hub):
    server = start_server(
        tmp_path,
        "--served-model-name",
        "smol",
        "--log-requests",  # to see what the piped prompt became
        env={"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "LLMKIT_SOURCES": "hf"},
    )
    # This process could not pull by itself: its hub is a port nothing listens on.
    dead = {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "LLMKIT_SOURCES": "hf"}
    try:
        done = run(server.home, REPO, "Say", "hi.", "--max-tokens", "4", **dead)
        assert done.returncode == 0, done.stderr
        assert "pulling manifest" in done.stderr and "success" in done.stderr
        assert done.stdout.strip() and "pulling" not in done.stdout
        ps = httpx.get(server.url + "/api/ps").json()["models"]
        assert f"{REPO}:latest" in [m["name"] for m in ps]
        assert (server.home / "models" / REPO / "smol-q4_1.gguf").is_file()  # the server's

        # PROMPT and piped text: one answer, from a model the server has (no pull).
        piped = run(server.home, "smol", "Reply:", "--max-tokens", "4", stdin="Hi.\n", **dead)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.strip() and "pulling" not in piped.stderr
        assert '"content": "Reply:\\n\\nHi."' in server.log()  # PROMPT, then stdin
    finally:
        server.stop()


def test_run_without_a_server_pulls_here_and_serves_in_process(tmp_path, hub):
    home = tmp_path / "home"
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "LLMKIT_SOURCES": "hf"}
    done = run(home, f"{REPO}:latest", "Hi", "--max-tokens", "4", **env)
    assert done.returncode == 0, done.stderr
    assert f"pulling {REPO}:latest from hf" in done.stderr
    assert done.stdout.strip()
    assert (home / "models" / REPO / "smol-q4_1.gguf").is_file()
    assert not (home / "server.json").exists()  # nothing left behind, no server recorded

    # Pulled already: no second pull, and stdin is the prompt.
    again = run(home, REPO, "--max-tokens", "4", stdin="Hello.\n", **env)
    assert again.returncode == 0, again.stderr
    assert "pulling" not in again.stderr and again.stdout.strip()
