"""``llmkit chat`` driven as a real terminal program (pexpect, a pty) against a real
``llmkit serve``. What the model says is not asserted (135M parameters); what
the server was sent is, from its ``--log-requests`` log, and what was stored is,
from the SQLite file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from llmkit.memory.database import default_store_url
from llmkit.memory.store import Store
from tests.conftest import requests_sent, until
from tests.relay import Relay, relay

MODEL = "SmolLM2-135M-Instruct"


def last_request_with(server, text: str) -> dict:
    hits = [r for r in requests_sent(server) if any(text in m["content"] for m in r["messages"])]
    assert hits, f"the server never received {text!r}"
    return hits[-1]


class Term:
    """One ``llmkit chat`` process in a pseudo-terminal."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        full_env = {
            **os.environ,
            "LLMKIT_HOME": str(home),
            "TERM": "xterm",
            "PROMPT_TOOLKIT_NO_CPR": "1",  # the pty does not answer cursor queries
            **(env or {}),
        }
        self.p = pexpect.spawn(
            sys.executable,
            ["-m", "llmkit", *args],
            env=full_env,
            encoding="utf-8",
            timeout=60,
            dimensions=(50, 200),
        )

    def entries(self, session: str) -> list:
        with Store(default_store_url(self.home)) as store:
            return store.entries(session)

    def say(self, text: str, session: str, *, expect_entries: int) -> None:
        """Type a message and wait until its reply is stored."""
        self.p.sendline(text)
        until(
            lambda: self.pump() or len(self.entries(session)) >= expect_entries,
            what=f"the reply to {text!r}",
        )
        self.drain()

    def drain(self) -> None:
        """Drop what the terminal printed so far (prompt redraws included), so the
        next ``expect`` sees only what comes after."""
        while True:
            try:
                self.p.read_nonblocking(100_000, timeout=0.3)
            except pexpect.TIMEOUT:
                return

    def pump(self) -> None:
        """Read what the terminal printed since the last read, without waiting."""
        try:
            self.p.read_nonblocking(1_000_000, timeout=0)
        except pexpect.TIMEOUT:
            pass

    def command(self, line: str, expect: str) -> str:
        self.drain()
        self.p.sendline(line)
        self.p.expect(expect)
        return self.p.before + self.p.after

    def exit(self) -> int:
        self.drain()
        self.p.sendline("/exit")
        self.p.expect(pexpect.EOF)
        self.p.close()
        return self.p.exitstatus


def test_two_turns_remember_and_resume_after_restart(server, tmp_path):
    t = Term(tmp_path, "chat", "--url", server.url, "--session", "ada", "--max-tokens", "20")
    t.p.expect("conversation .*ada")
    t.p.expect(">>>")
    t.say("My name is Zorblax.", "ada", expect_entries=2)
    t.say("What is my name?", "ada", expect_entries=4)
    # The second question went out with the first exchange: the chat remembers.
    sent = last_request_with(server, "What is my name?")["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "My name is Zorblax."
    assert t.exit() == 0

    # A new process resumes the last conversation from the store.
    t = Term(tmp_path, "chat", "--url", server.url, "--continue", "--max-tokens", "10")
    t.p.expect("ada.*2 turn")
    t.p.expect(">>>")
    t.say("And my name again?", "ada", expect_entries=6)
    sent = last_request_with(server, "And my name again?")["messages"]
    assert sent[0]["content"] == "My name is Zorblax." and len(sent) == 5
    assert t.exit() == 0


def test_slash_commands(server, tmp_path):
    t = Term(tmp_path, "chat", "--url", server.url, "--session", "cmds", "--max-tokens", "8")
    t.p.expect(">>>")
    assert "/retry" in t.command("/help", "/exit +leave")
    t.p.expect(">>>")

    t.command("/system You are a pirate.", "system prompt set")
    t.say("Hello there.", "cmds", expect_entries=2)
    sent = last_request_with(server, "Hello there.")["messages"]
    assert sent[0] == {"role": "system", "content": "You are a pirate."}

    t.say("Second question.", "cmds", expect_entries=4)
    t.command("/memory window:1", "memory: window:1")
    t.say("Third question.", "cmds", expect_entries=6)
    sent = last_request_with(server, "Third question.")["messages"]
    # window:1 keeps one earlier exchange besides the new message, and the system prompt
    assert [m["content"] for m in sent if m["role"] == "user"] == [
        "Second question.",
        "Third question.",
    ]

    before = t.entries("cmds")[-1]
    t.p.sendline("/retry")
    until(lambda: t.entries("cmds")[-1].id != before.id, what="the retried reply")
    t.drain()
    after = t.entries("cmds")
    assert (
        len(after) == 6
        and after[-1].role == "assistant"
        and after[-2].content == ("Third question.")
    )

    assert "Second question." in t.command("/history", "Third question.")
    md, js = tmp_path / "out.md", tmp_path / "out.json"
    t.command(f"/export {md}", "wrote")
    t.command(f"/export {js}", "wrote")
    assert "Hello there." in md.read_text()
    assert [m["role"] for m in json.loads(js.read_text())["messages"]][:2] == ["user", "assistant"]

    t.command("/new other", "conversation .*other")
    t.say("In the other one.", "other", expect_entries=2)
    listing = t.command("/sessions", "cmds")
    assert "other" in listing
    t.command("/switch cmds", "conversation .*cmds.*3 turn")
    t.command("/switch nosuch", "No conversation named 'nosuch'")
    t.command("/bogus", "unknown command")
    t.command("/system", "system prompt cleared")
    assert t.exit() == 0
    with Store(default_store_url(tmp_path)) as store:
        assert store.get("cmds").system is None and store.get("cmds").memory == "window:1"


def streaming(t: Term, r: Relay, nth: int) -> None:
    """Wait until the ``nth`` reply has streamed 30 pieces through the relay, reading
    the terminal meanwhile (a chat whose output nobody reads blocks on it)."""
    until(lambda: t.pump() or (len(r.pieces) == nth and r.pieces[-1] >= 30), what="a reply")


def test_ctrl_c_stops_the_reply_and_keeps_it(server, tmp_path):
    # Through a relay that asks for ignore_eos: each reply runs to its 3,000 tokens
    # whatever the model says, so Ctrl-C always lands while it streams.
    with relay(server.url) as (url, r):
        t = Term(tmp_path, "chat", "--url", url, "--session", "long", "--max-tokens", "3000")
        t.p.expect(">>>")
        t.drain()
        t.p.sendline("Write a very long essay about the history of Rome.")
        streaming(t, r, 1)
        t.p.sendintr()
        t.p.expect("reply stopped")
        t.p.expect(">>>")
        entries = t.entries("long")
        assert [e.role for e in entries] == ["user", "assistant"]
        assert entries[1].interrupted and len(entries[1].content) > 20
        # Still in the chat: the next message goes out, with the interrupted reply in it.
        t.drain()
        t.p.sendline("Thanks.")
        streaming(t, r, 2)
        sent = last_request_with(server, "Thanks.")["messages"]
        assert sent[1] == {"role": "assistant", "content": entries[1].content}
        t.p.sendintr()  # stops this one too
        t.p.expect("reply stopped")
        t.p.expect(">>>")
        assert [(e.role, e.interrupted) for e in t.entries("long")][2:] == [
            ("user", False),
            ("assistant", True),
        ]
        assert t.exit() == 0


def test_finds_the_local_server_or_says_how_to_start_one(server, tmp_path):
    # The server recorded its address in its home: a chat there needs no --url.
    t = Term(server.home, "chat", "--session", "local-find", "--max-tokens", "5")
    t.p.expect(f"{MODEL}.*{server.url}")
    t.p.expect(">>>")
    assert t.exit() == 0

    t = Term(tmp_path / "empty", "chat")
    t.p.expect(pexpect.EOF)
    t.p.close()
    assert t.p.exitstatus == 1
    out = " ".join(t.p.before.split())
    assert "No llmkit server is running" in out and "llmkit serve" in out and "llmkit run" in out


def test_ollama_dialect_and_bad_url(server, tmp_path):
    t = Term(
        tmp_path,
        "chat",
        "--url",
        server.url,
        "--dialect",
        "ollama",
        "--session",
        "o",
        "--max-tokens",
        "8",
    )
    t.p.expect(r"\(ollama\)")
    t.p.expect(">>>")
    t.say("Hello.", "o", expect_entries=2)
    assert t.exit() == 0

    t = Term(tmp_path, "chat", "--url", "http://127.0.0.1:9", "--session", "never")
    t.p.expect(pexpect.EOF)
    t.p.close()
    assert t.p.exitstatus == 1 and "Cannot reach http://127.0.0.1:9" in t.p.before
    with Store(default_store_url(tmp_path)) as store:
        assert "never" not in [c.name for c in store.list()]  # nothing half-made


@pytest.mark.timeout(180)
def test_run_serves_the_bundled_model_in_process(tmp_path):
    t = Term(tmp_path, "run", "--session", "inproc", "--max-tokens", "8")
    t.p.expect(f"{MODEL}", timeout=120)
    t.p.expect(">>>")
    t.say("Hello.", "inproc", expect_entries=2)
    assert t.exit() == 0
