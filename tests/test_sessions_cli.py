"""``llmkit sessions``, run in-process with click's runner against a real SQLite
store in a temporary ``LLMKIT_HOME``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.memory.database import default_store_url
from llmkit.memory.store import Store


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    with Store(default_store_url(tmp_path)) as store:
        store.create("work", model="smol", system="Be terse.", memory="tokens")
        store.append("work", "user", "Where is the invoice for March?")
        store.append("work", "assistant", "In the shared folder.")
        store.append("work", "user", "Thanks!")
        store.append("work", "assistant", "You're wel", interrupted=True)
        store.create("other")
        store.append("other", "user", "Bonjour.")
    return tmp_path


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(cli, ["sessions", *args], input=input, catch_exceptions=False)
    return result


def test_list_shows_name_model_turns_and_last_use(home):
    out = run("list")
    assert out.exit_code == 0
    lines = [line.split() for line in out.output.splitlines()]
    assert lines[0][:4] == ["name", "model", "turns", "memory"]
    assert lines[1][0] == "other" and lines[2][:4] == ["work", "smol", "2", "tokens"]
    rows = json.loads(run("list", "--json").output)
    assert [r["name"] for r in rows] == ["other", "work"] and rows[1]["turns"] == 2


def test_show_prints_the_whole_transcript(home):
    out = run("show", "work").output
    for text in (
        "Be terse.",
        "Where is the invoice for March?",
        "In the shared folder.",
        "Thanks!",
    ):
        assert text in out
    assert "interrupted" in out


def test_export_then_import_round_trips(home, tmp_path):
    md = run("export", "work", "--format", "markdown").output
    assert "Where is the invoice" in md
    target = tmp_path / "work.json"
    assert run("export", "work", "-o", str(target)).exit_code == 0
    data = json.loads(target.read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user", "assistant"]
    assert data["messages"][3]["interrupted"] is True

    out = run("import", str(target))
    assert out.exit_code == 1 and "already exists" in out.output
    assert "imported copy (2 turns)" in run("import", str(target), "--name", "copy").output
    with Store(default_store_url(home)) as store:
        assert [e.content for e in store.entries("copy")] == [
            e.content for e in store.entries("work")
        ]


def test_rename_rm_and_search(home):
    assert "renamed work to project" in run("rename", "work", "project").output
    hits = run("search", "INVOICE").output
    assert "project [user]" in hits and "invoice for March" in hits
    assert "No message contains" in run("search", "zebra").output

    out = run("rm", "project", input="n\n")
    assert out.exit_code == 1  # aborted: still there
    assert "project" in run("list").output
    assert "deleted project" in run("rm", "project", "--yes").output
    assert "project" not in run("list").output


def test_mistakes_are_one_line_errors(home, tmp_path):
    out = run("show", "nosuch")
    assert out.exit_code == 1
    assert "No conversation named 'nosuch'" in out.output and "Traceback" not in out.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "is not JSON" in run("import", str(bad)).output
    assert "already exists" in run("rename", "work", "other").output
