"""``llmkit chat`` with a reasoning model: the thinking shown apart from the answer
(dimmed on a terminal, or folded to one line), only the answer stored as the reply.
Against the stand-in reasoning server (``tests/thinking_upstream.py``) over a real
socket; piped through click's runner, and in a real pseudo-terminal (pexpect)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.memory.database import default_store_url
from llmkit.memory.store import Store
from tests.conftest import serving, until
from tests.test_chat_cli import Term
from tests.thinking_upstream import ANSWER, MODEL, THINKING, Thinker

THOUGHT = "".join(THINKING)
SAID = "".join(ANSWER)


@pytest.fixture(scope="module")
def thinker() -> Iterator[tuple[Thinker, str]]:
    t = Thinker()
    with serving(t.app) as url:
        yield t, url.removeprefix("http://")


def chat(home: Path, *args: str, input: str) -> str:
    r = CliRunner().invoke(
        cli, ["chat", *args], input=input, env={"LLMKIT_HOME": str(home)}, catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    return r.output


def stored(home: Path, session: str) -> list[tuple[str, str, str]]:
    with Store(default_store_url(home)) as store:
        return [(e.role, e.content, e.reasoning) for e in store.entries(session)]


def test_the_thinking_comes_first_then_the_answer_and_only_the_answer_is_the_reply(
    thinker, tmp_path
):
    t, host = thinker
    url = f"openai://{host}/v1"
    out = chat(tmp_path, "--url", url, "--model", MODEL, "--session", "p", input="Hi\n")
    assert f"{THOUGHT}\n\n{SAID}\n" in out
    assert stored(tmp_path, "p") == [("user", "Hi", ""), ("assistant", SAID, THOUGHT)]
    assert "reasoning_effort" not in t.requests[-1]  # no --think: the model's own default


def test_hidden_thinking_is_one_line_and_think_reaches_the_server(thinker, tmp_path):
    t, host = thinker
    out = chat(
        tmp_path,
        "--url", f"ollama://{host}", "--model", MODEL, "--session", "h",
        "--hide-thinking", "--think", "high",
        input="Hi\n",
    )  # fmt: skip
    assert t.requests[-1]["think"] == "high"
    assert THOUGHT not in out and f"thinking...\n{SAID}\n" in out
    assert stored(tmp_path, "h")[-1] == ("assistant", SAID, THOUGHT)
    # /thinking shows what was folded away
    out = chat(tmp_path, "--url", f"ollama://{host}", "--session", "h", input="/thinking\n")
    assert THOUGHT in out
    out = chat(tmp_path, "--url", f"ollama://{host}", "--session", "h", "--think", "off",
               input="Again\n")  # fmt: skip
    assert t.requests[-1]["think"] is False
    assert stored(tmp_path, "h")[-1] == ("assistant", SAID, "")


def test_on_a_terminal_the_thinking_is_dimmed_and_the_answer_is_not(thinker, tmp_path):
    _, host = thinker
    term = Term(tmp_path, "chat", "--url", f"openai://{host}/v1", "--model", MODEL,
                "--session", "tty")  # fmt: skip
    term.p.expect(">>>")
    term.p.sendline("Hi")
    term.p.expect(re.escape(SAID))
    shown = term.p.before + term.p.after
    until(lambda: len(term.entries("tty")) == 2, what="the reply stored")
    assert term.exit() == 0
    # rich's dim (SGR 2) around the thinking; the answer after it, plain
    assert THOUGHT in re.findall(r"\x1b\[2m([^\x1b]*)\x1b\[0m", shown)
    after = shown[shown.rindex(THOUGHT) + len(THOUGHT) :]
    assert after.endswith(SAID) and "\x1b[2m" not in after
    assert term.entries("tty")[-1].content == SAID
