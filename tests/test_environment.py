"""Every environment variable is declared once (``llmkit.env`` and the generated
serve settings), listed in the docs' reference, and honoured the same way by every
command: with ``LLMKIT_STORE`` set, ``llmkit chat``, ``llmkit run`` and
``llmkit sessions`` all use that store and none writes the data directory's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llmkit.config.settings import load_serve_settings, serve_variables
from llmkit.engines.spec import load_specs
from llmkit.env import VARIABLES, Environment, ModelsSettings
from llmkit.memory.store import Store

DOCS = Path(__file__).resolve().parent.parent / "docs"
LLMKIT = [sys.executable, "-m", "llmkit"]


def test_every_variable_is_listed_in_the_docs():
    """The environment page is rendered at build time by the docs hook: it lists them all."""
    from tests.test_docs import rendered

    page = rendered(DOCS / "reference" / "environment.md")
    names = [v.name for v in VARIABLES] + [n for n, _ in serve_variables(load_specs())]
    missing = [n for n in names if f"`{n}`" not in page]
    assert not missing, f"docs/reference/environment.md does not list {missing}"


def test_serve_settings_take_flags_over_variables_over_the_file(tmp_path):
    (tmp_path / "m.yaml").write_text("port: 7000\nparallel: 2\nthreads: 1\nlog_level: debug\n")
    env = Environment.read(
        {"LLMKIT_CONFIG": str(tmp_path / "m.yaml"), "LLMKIT_PORT": "7001", "LLMKIT_PARALLEL": "3"}
    )
    s = load_serve_settings({"parallel": 4}, env, load_specs())
    assert (s.port, s.log_level) == (7001, "debug")  # the variable over the file
    assert s.options == {"parallel": 4, "threads": 1}  # the flag over both


def test_models_settings_come_from_the_environment_given():
    env = Environment.read(
        {"LLMKIT_HOME": "/h", "HF_ENDPOINT": "http://hub", "LLMKIT_SOURCES": "hf"}
    )
    m = ModelsSettings.from_env(env)
    assert (m.models_dir, m.hf_endpoint, m.sources) == (Path("/h/models"), "http://hub", ["hf"])
    assert ModelsSettings.from_env(env, sources=["modelscope"]).sources == ["modelscope"]


def test_chat_run_and_sessions_use_the_store_llmkit_store_names(server, tmp_path):
    store = tmp_path / "elsewhere.db"
    env = {
        **os.environ,
        "LLMKIT_HOME": str(tmp_path / "home"),
        "LLMKIT_STORE": f"sqlite:///{store}",
    }
    common = {"env": env, "capture_output": True, "text": True, "timeout": 180}
    chat = subprocess.run(
        [*LLMKIT, "chat", "--url", server.url, "--session", "from-chat", "--max-tokens", "8"],
        input="Hello there.\n",
        **common,
    )
    assert chat.returncode == 0, chat.stderr
    run = subprocess.run(
        [*LLMKIT, "run", "--session", "from-run", "--max-tokens", "8"],
        input="Hello again.\n",
        **common,
    )
    assert run.returncode == 0, run.stderr
    listed = subprocess.run([*LLMKIT, "sessions", "list", "--json"], **common)
    names = {c["name"] for c in json.loads(listed.stdout)}
    assert names == {"from-chat", "from-run"}
    with Store(f"sqlite:///{store}") as s:
        assert [e.role for e in s.entries("from-chat")] == ["user", "assistant"]
        assert s.entries("from-run")[0].content == "Hello again."
    assert not (tmp_path / "home" / "llmkit.db").exists()  # the data directory's store: unused
