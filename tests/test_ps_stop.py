"""``llmkit ps`` and ``llmkit stop`` against a real ``llmkit serve`` holding two
models: what each shows (engine, size, context, slots, queue, until when it
stays loaded), found through the server's record in the data directory as
``llmkit chat`` finds it, and one model unloaded while the other stays."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import ollama
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from tests.conftest import Server, long_chat, start_server


@pytest.fixture(scope="module")
def two(bundled_path: str, tmp_path_factory: pytest.TempPathFactory) -> Server:
    tmp = tmp_path_factory.mktemp("ps")
    config = tmp / "models.yaml"
    config.write_text(
        f"""
parallel: 1
max_model_len: 1024
models:
  - model: {bundled_path}
    served_model_name: [alpha, a]
  - model: {bundled_path}  # the same file again: two models all the same
    served_model_name: [beta]
    keep_alive: 10m
    max_model_len: 512
    speculative: off
"""
    )
    s = start_server(tmp, "--config", str(config))
    yield s
    s.stop()


@pytest.fixture()
def home(two: Server, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The CLI finds the server the way `llmkit chat` does: its record in LLMKIT_HOME.
    monkeypatch.setenv("LLMKIT_HOME", str(two.home))
    monkeypatch.delenv("LLMKIT_URL", raising=False)
    return two.home


def llmkit(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def ps_json() -> dict[str, dict]:
    code, out = llmkit("ps", "--json")
    assert code == 0, out
    return {r["name"]: r for r in json.loads(out)}


def test_ps_shows_both_models(home, two):
    found = ps_json()
    assert set(found) == {"alpha", "beta"}
    alpha, beta = found["alpha"], found["beta"]
    assert alpha["aliases"] == ["a"]
    assert alpha["engine"] == beta["engine"] == "llama.cpp"
    assert alpha["context_length"] == 1024 and beta["context_length"] == 512
    assert alpha["slots"] == 1 and alpha["slots_in_use"] == 0 and alpha["queue"] == 0
    assert alpha["size"] > 50_000_000
    assert alpha["expires_in_s"] is None  # keep_alive -1: loaded for good
    # Speculative decoding: on by default (with the share accepted once it drafted),
    # off as configured.
    assert alpha["speculative"].split()[0] == "ngram" and beta["speculative"] == "off"
    assert 0 < beta["expires_in_s"] <= 600  # keep_alive 10m

    # Ollama's own client reads the same listing (llmkit's extra fields ignored).
    listed = ollama.Client(host=two.url).ps().models
    assert [(m.name, m.context_length) for m in listed] == [
        ("alpha:latest", 1024),
        ("a:latest", 1024),
        ("beta:latest", 512),
    ]

    code, out = llmkit("ps")
    assert code == 0
    lines = out.splitlines()
    header = ["NAME", "ENGINE", "SIZE", "CONTEXT", "SLOTS", "QUEUE", "SPECULATIVE", "UNTIL"]
    assert lines[0].split() == header
    row = {line.split()[0]: line for line in lines[1:]}
    assert "alpha (a)" in row["alpha"] and "forever" in row["alpha"]
    assert " 1024 " in row["alpha"] and " 0/1 " in row["alpha"]
    assert " 512 " in row["beta"] and ("in 9m" in row["beta"] or "in 10m" in row["beta"])


def test_ps_shows_slots_in_use_and_the_queue(home, two):
    """One generation holds alpha's only slot, a second waits: ps says so."""
    first_token = threading.Event()
    done = threading.Event()

    def hold() -> None:
        body = long_chat(max_tokens=None, model="alpha")  # the whole context
        with httpx.stream("POST", two.v1 + "/chat/completions", json=body, timeout=120) as r:
            for _ in r.iter_lines():
                first_token.set()
                if done.is_set():
                    return  # leaving ends the generation

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(2)]
    threads[0].start()
    assert first_token.wait(120)
    threads[1].start()
    try:
        deadline = time.monotonic() + 60
        while ps_json()["alpha"]["queue"] != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        alpha = ps_json()["alpha"]
        assert alpha["slots_in_use"] == 1 and alpha["queue"] == 1
        _, out = llmkit("ps")
        assert " 1/1 " in next(line for line in out.splitlines() if line.startswith("alpha"))
    finally:
        done.set()
        for t in threads:
            t.join(60)


def test_stop_unloads_one_model_and_the_other_stays(home, two):
    code, out = llmkit("stop", "beta:latest")
    assert code == 0 and out.strip() == "stopped beta:latest"
    assert set(ps_json()) == {"alpha"}
    # The Ollama listing agrees, and alpha still answers.
    assert [m["name"] for m in httpx.get(two.url + "/api/ps").json()["models"]] == [
        "alpha:latest",
        "a:latest",
    ]
    r = two.client().chat.completions.create(
        model="a", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert r.usage.completion_tokens == 2

    code, out = llmkit("stop", "beta")
    assert code == 0 and out.strip() == "beta is not loaded; nothing to stop."
    code, out = llmkit("stop", "gamma")
    assert code == 1
    assert "serves no model named 'gamma'; it serves alpha, a, beta" in out


def test_ps_and_stop_without_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    monkeypatch.delenv("LLMKIT_URL", raising=False)
    for args in (["ps"], ["stop", "alpha"]):
        code, out = llmkit(*args)
        assert code == 1 and "No llmkit server is running on this machine" in out
    code, out = llmkit("ps", "--url", "http://127.0.0.1:9")
    assert code == 1 and "Cannot reach http://127.0.0.1:9" in out


def test_stop_under_a_running_request_unloads_when_it_ends(home, two):
    started, leave = threading.Event(), threading.Event()

    def hold() -> None:
        body = long_chat(max_tokens=None, model="alpha")
        with httpx.stream("POST", two.v1 + "/chat/completions", json=body, timeout=120) as r:
            for _ in r.iter_lines():
                started.set()
                if leave.is_set():
                    return

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert started.wait(120)
    try:
        code, out = llmkit("stop", "a")
        assert code == 0 and out.strip() == "a is answering a request; it unloads when that ends."
        assert "alpha" in ps_json()  # never unloaded under a running request
    finally:
        leave.set()
        t.join(60)
    deadline = time.monotonic() + 60
    while "alpha" in ps_json() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "alpha" not in ps_json()
    # The next request loads it again.
    r = two.client().chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert r.usage.completion_tokens == 2 and "alpha" in ps_json()
