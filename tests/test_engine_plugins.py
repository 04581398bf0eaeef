"""Engines from other packages: a toy engine registered through the
``llmkit.engines`` entry-point group (distribution metadata on the path, as
``pip install`` would leave it) is served by ``llmkit serve --engine toy``, with
the flags generated from its options working, and listed in ``--help``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import start_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def plugin_path(tmp_path: Path) -> str:
    """A directory that holds what installing a package ``toy-engine`` leaves behind:
    its metadata, with the entry point ``toy = tests.toy_engine:SPEC``."""
    dist = tmp_path / "site" / "toy_engine-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-engine\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[llmkit.engines]\ntoy = tests.toy_engine:SPEC\n")
    return os.pathsep.join([str(tmp_path / "site"), str(ROOT)])


def test_a_registered_engine_is_served_with_its_own_flags(tmp_path, plugin_path):
    server = start_server(
        tmp_path / "srv",
        "--engine", "toy", "--model", "parrot", "--toy-greeting", "ahoy", "--toy-repeat", "2",
        env={"PYTHONPATH": plugin_path},
    )  # fmt: skip
    try:
        client = openai.OpenAI(base_url=server.v1, api_key="unused")
        assert [m.id for m in client.models.list().data] == ["parrot"]
        reply = client.chat.completions.create(
            model="parrot", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "ahoy ahoy"
        assert reply.usage is not None and reply.usage.completion_tokens == 2
        # An engine that cannot score its tokens says so, in each dialect, rather than
        # answering without them.
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model="parrot", messages=[{"role": "user", "content": "hi"}], logprobs=True
            )
        assert e.value.body["param"] == "logprobs" and "toy" in e.value.body["message"]
        r = httpx.post(
            server.url + "/api/generate",
            json={"model": "parrot", "prompt": "hi", "logprobs": True, "stream": False},
            timeout=30,
        )
        assert r.status_code == 400 and "logprobs are not supported" in r.json()["error"]
    finally:
        server.stop()


def test_its_flags_are_in_help_and_refused_for_other_engines(tmp_path, plugin_path):
    env = {**os.environ, "PYTHONPATH": plugin_path, "LLMKIT_HOME": str(tmp_path)}
    run = [sys.executable, "-m", "llmkit", "serve"]
    shown = subprocess.run([*run, "--help"], env=env, capture_output=True, text=True)
    assert "--toy-greeting" in shown.stdout and "[toy]" in shown.stdout
    assert "toy: says hello" in " ".join(shown.stdout.split())
    refused = subprocess.run(
        [*run, "--toy-greeting", "ahoy", "--port", "0"], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "--toy-greeting does not apply to the llamacpp engine" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_without_the_package_there_is_no_such_engine(tmp_path):
    env = {**os.environ, "LLMKIT_HOME": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "llmkit", "serve", "--engine", "toy"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode != 0 and "'toy' is not one of" in r.stderr
