"""A reasoning model's thinking, kept apart from its answer by the client and
``Chat``: against a stand-in server that thinks and answers in the real OpenAI
(``reasoning_content``), Ollama (``thinking``) and Anthropic (``thinking`` blocks)
protocols over a real socket
(``tests/thinking_upstream.py``), with a real SQLite store; and the store's new
column added to a database made before it (PostgreSQL: ``test_store_postgres``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmkit import Chat
from llmkit.client.http import Client
from llmkit.core.types import GenerateRequest, Message
from llmkit.errors import InvalidRequestError
from llmkit.memory import migrations
from llmkit.memory.chat import Reply, Thought
from llmkit.memory.store import Store
from tests.conftest import serving
from tests.thinking_upstream import ANSWER, MODEL, THINKING, Thinker

THOUGHT = "".join(THINKING)
SAID = "".join(ANSWER)
DIALECTS = ["openai", "ollama"]


@pytest.fixture(scope="module")
def thinker() -> Iterator[tuple[Thinker, str]]:
    t = Thinker()
    with serving(t.app) as url:
        yield t, url.removeprefix("http://")


@pytest.fixture()
def standin(thinker: tuple[Thinker, str]) -> Iterator[tuple[Thinker, str]]:
    t, host = thinker
    t.requests.clear()
    t.gate = None
    t.thought.clear()
    yield t, host
    if t.gate is not None:
        t.gate.set()  # never leave a reply waiting


@pytest.fixture()
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def chat(host: str, dialect: str, store_url: str, **kw: object) -> Chat:
    url = f"{dialect}://{host}" + ("/v1" if dialect == "openai" else "")
    return Chat(url, MODEL, store=store_url, session="s", **kw)  # type: ignore[arg-type]


def history_sent(t: Thinker) -> list[dict]:
    return t.requests[-1]["messages"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_client_reads_thinking_apart_from_the_answer(standin, dialect):
    _, host = standin
    url = f"{dialect}://{host}" + ("/v1" if dialect == "openai" else "")
    with Client(url) as c:
        chunks = list(c.stream_chat(MODEL, [Message("user", "Hi")]))
    assert "".join(ch.reasoning for ch in chunks) == THOUGHT
    assert "".join(ch.text for ch in chunks) == SAID
    # no chunk mixes them here: the stand-in sends each in pieces of its own
    assert all(not (ch.reasoning and ch.text) for ch in chunks)
    last = chunks[-1]
    assert last.finish_reason == "stop"
    if dialect == "openai":  # Ollama does not count thinking apart
        assert last.usage is not None and last.usage.reasoning_tokens == len(THINKING)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_chat_stores_the_answer_as_content_and_the_thinking_apart(standin, store_url, dialect):
    t, host = standin
    c = chat(host, dialect, store_url)
    reply = c.send("Hi")
    assert isinstance(reply, Reply) and reply == SAID and reply.reasoning == THOUGHT
    entries = Store(store_url).entries("s")
    assert [(e.role, e.content, e.reasoning) for e in entries] == [
        ("user", "Hi", ""),
        ("assistant", SAID, THOUGHT),
    ]
    # A reload (a new Chat, a new process's view of the store) has both.
    again = chat(host, dialect, store_url)
    assert again.entries[-1].content == SAID and again.entries[-1].reasoning == THOUGHT
    # The next turn sends the history by its answers: no earlier thinking goes back.
    again.send("And?")
    sent = history_sent(t)
    assert sent[1] == {"role": "assistant", "content": SAID}


@pytest.mark.parametrize(
    ("dialect", "field"), [("openai", "reasoning_content"), ("ollama", "thinking")]
)
def test_thinking_goes_back_only_when_asked(standin, store_url, dialect, field):
    t, host = standin
    chat(host, dialect, store_url).send("Hi")
    chat(host, dialect, store_url, resend_reasoning=True).send("And?")
    sent = history_sent(t)
    assert sent[1] == {"role": "assistant", "content": SAID, field: THOUGHT}
    assert field not in sent[0] and field not in sent[2]  # user turns carry none


@pytest.mark.parametrize("dialect", DIALECTS)
def test_streamed_pieces_tell_thinking_from_answer(standin, store_url, dialect):
    _, host = standin
    c = chat(host, dialect, store_url)
    pieces = list(c.stream("Hi", thinking=True))
    thoughts = [p for p in pieces if isinstance(p, Thought)]
    answer = [p for p in pieces if not isinstance(p, Thought)]
    assert "".join(thoughts) == THOUGHT and "".join(answer) == SAID
    assert pieces.index(thoughts[-1]) < pieces.index(answer[0])  # thinking comes first
    # Without thinking=True the stream is the answer alone, as before.
    assert "".join(c.stream("Again")) == SAID


@pytest.mark.parametrize(
    ("dialect", "think", "wire"),
    [
        ("openai", False, {"reasoning_effort": "none"}),
        ("openai", "high", {"reasoning_effort": "high"}),
        ("openai", True, {}),  # OpenAI has no "on": the model's own default
        ("ollama", False, {"think": False}),
        ("ollama", True, {"think": True}),
        ("ollama", "low", {"think": "low"}),
    ],
)
def test_think_reaches_the_server_in_its_dialect(standin, store_url, dialect, think, wire):
    t, host = standin
    reply = chat(host, dialect, store_url, think=think).send("Hi")
    body = t.requests[-1]
    asked = {k: body[k] for k in ("reasoning_effort", "think") if k in body}
    assert asked == wire
    # The stand-in thinks unless switched off, as a reasoning model does.
    assert reply.reasoning == ("" if think is False else THOUGHT)
    assert Store(store_url).entries("s")[-1].reasoning == reply.reasoning


def test_a_bad_think_value_is_refused_naming_the_values(standin, store_url):
    t, host = standin
    with pytest.raises(InvalidRequestError) as e:
        chat(host, "openai", store_url, think="max")
    assert "true, false, 'low', 'medium', 'high'" in e.value.message
    assert e.value.param == "think"
    with pytest.raises(InvalidRequestError), Client(f"ollama://{host}") as c:
        list(c.stream_chat(MODEL, [Message("user", "Hi")], think="very"))  # type: ignore[arg-type]
    assert t.requests == []  # refused before anything went out


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_reply_cut_while_thinking_keeps_the_thinking_marked_interrupted(
    standin, store_url, dialect
):
    t, host = standin
    t.gate = threading.Event()
    c = chat(host, dialect, store_url)
    stream = c.stream("Hi", thinking=True)
    got = [next(stream) for _ in THINKING]  # all the thinking, the answer held back
    assert t.thought.wait(30)
    stream.close()  # the caller stops reading (Ctrl-C, a closed page)
    assert "".join(got) == THOUGHT
    last = Store(store_url).entries("s")[-1]
    assert (last.role, last.content, last.reasoning, last.interrupted) == (
        "assistant",
        "",
        THOUGHT,
        True,
    )


def test_export_import_and_markdown_keep_the_thinking(standin, store_url):
    _, host = standin
    chat(host, "openai", store_url).send("Hi")
    store = Store(store_url)
    doc = store.export("s")
    assert doc["messages"][1]["reasoning"] == THOUGHT
    assert "reasoning" not in doc["messages"][0]  # only where a turn has some
    store.import_(doc, name="copy")
    assert [e.reasoning for e in store.entries("copy")] == ["", THOUGHT]
    md = store.to_markdown("s")
    assert f"## Assistant\n\n> *Thinking*\n>\n> {THOUGHT}\n\n{SAID}\n" in md


def test_upstream_request_bodies_carry_the_switch_and_the_history():
    from llmkit.client.bodies import to_ollama, to_openai

    turns = (
        Message("user", "Hi"),
        Message("assistant", SAID, reasoning=THOUGHT),
        Message("user", "And?"),
    )
    req = GenerateRequest(messages=turns, think=True, effort="medium")
    _, o = to_openai("m", req)
    assert o["reasoning_effort"] == "medium"
    assert o["messages"][1] == {"role": "assistant", "content": SAID, "reasoning_content": THOUGHT}
    _, a = to_ollama("m", req)
    assert a["think"] == "medium"
    assert a["messages"][1] == {"role": "assistant", "content": SAID, "thinking": THOUGHT}
    plain = GenerateRequest(messages=turns[:1])
    assert "reasoning_effort" not in to_openai("m", plain)[1]
    assert "think" not in to_ollama("m", plain)[1]


# -- the store's new column on a database made before it ------------------------------


def old_database(url: str) -> None:
    """A store as llmkit left it before m005: its migrations, and a reply in it."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        migrations.applied.create(conn, checkfirst=True)
        for fn in migrations.MIGRATIONS[:4]:
            fn(conn)
            conn.execute(
                migrations.applied.insert().values(
                    name=fn.__name__, applied_at=sa.func.current_timestamp()
                )
            )
        cid = conn.execute(
            sa.text(
                "INSERT INTO conversations (name, memory, created_at, updated_at) "
                "VALUES ('old', 'buffer', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id"
            )
        ).scalar_one()
        for role, text in (("user", "Hi"), ("assistant", "Hello.")):
            conn.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, role, content, status, created_at) "
                    "VALUES (:c, :r, :t, 'complete', CURRENT_TIMESTAMP)"
                ),
                {"c": cid, "r": role, "t": text},
            )
    engine.dispose()


def check_migrated(url: str) -> None:
    with Store(url) as store:
        old = store.entries("old")
        assert [(e.content, e.reasoning) for e in old] == [("Hi", ""), ("Hello.", "")]
        e = store.append("old", "assistant", SAID, reasoning=THOUGHT)
        assert (e.content, e.reasoning) == (SAID, THOUGHT)
        cut = store.rewrite("old", e.id, SAID + " More.", interrupted=False)
        assert cut.reasoning == THOUGHT  # continuing a reply keeps its thinking
    with Store(url) as again:  # applied once, recorded
        assert [e.reasoning for e in again.entries("old")] == ["", "", THOUGHT]
        names = [fn.__name__ for fn in migrations.MIGRATIONS]
        with again._read() as conn:
            done = set(conn.execute(sa.select(migrations.applied.c.name)).scalars())
        assert "m005_message_reasoning" in done and done == set(names)


def test_the_reasoning_column_is_added_to_an_older_sqlite_store(store_url):
    old_database(store_url)
    check_migrated(store_url)


# -- Anthropic's Messages API, named: anthropic://HOST:PORT --------------------------


def test_chat_over_anthropic_thinks_when_asked_and_keeps_it_apart(standin, store_url):
    t, host = standin
    url = f"anthropic://{host}"
    plain = Chat(url, MODEL, store=store_url, session="a", api_key="k").send("Hi")
    body = t.requests[-1]
    assert (plain, plain.reasoning) == (SAID, "")  # no thinking unless asked, as Anthropic
    assert "thinking" not in body and body["max_tokens"] == 1024
    assert body["headers"]["x-api-key"] == "k" and body["headers"]["anthropic-version"]
    reply = Chat(url, MODEL, store=store_url, session="a", think=True).send("Again")
    body = t.requests[-1]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert body["max_tokens"] == 4096 + 1024  # max_tokens counts thinking and answer
    assert (reply, reply.reasoning) == (SAID, THOUGHT)
    assert Store(store_url).entries("a")[-1].reasoning == THOUGHT
    # Earlier thinking goes back as a thinking block only when asked.
    Chat(url, MODEL, store=store_url, session="a", think="low").send("More")
    body = t.requests[-1]
    assert body["thinking"]["budget_tokens"] == 1024
    assert body["messages"][3] == {"role": "assistant", "content": SAID}
    Chat(url, MODEL, store=store_url, session="a", resend_reasoning=True, think=False).send("?")
    body = t.requests[-1]
    assert body["thinking"] == {"type": "disabled"}
    assert body["messages"][3]["content"] == [
        {"type": "thinking", "thinking": THOUGHT, "signature": ""},
        {"type": "text", "text": SAID},
    ]


def test_the_client_reads_anthropic_thinking_blocks_and_usage(standin):
    _, host = standin
    with Client(f"anthropic://{host}") as c:
        req = GenerateRequest(messages=(Message("user", "Hi"),), think=True)
        chunks = list(c.stream(MODEL, req))
    assert "".join(ch.reasoning for ch in chunks) == THOUGHT
    assert "".join(ch.text for ch in chunks) == SAID
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (12, 6)


# -- memory: history is fitted and folded by its answers ------------------------------


def test_a_summary_folds_the_answers_and_stores_no_thinking(standin, store_url):
    t, host = standin
    c = chat(host, "openai", store_url, memory="summary:1")
    for text in ("One", "Two", "Three"):
        c.send(text)
    folds = [r for r in t.requests if "New summary:" in r["messages"][-1]["content"]]
    assert folds, "the summary strategy never folded"
    quoted = folds[0]["messages"][-1]["content"]
    assert f"Assistant: {SAID}" in quoted and THOUGHT not in quoted
    assert c.conversation.summary == SAID  # the summariser's answer, never its thinking


def test_async_chat_keeps_thinking_apart_too(standin, store_url):
    import asyncio

    from llmkit.memory.chat import AsyncChat

    _, host = standin

    async def talk() -> tuple[Reply, list[str]]:
        c = await AsyncChat.open(f"ollama://{host}", MODEL, store=store_url, session="s")
        try:
            reply = await c.send("Hi")
            pieces = [p async for p in c.stream("Again", thinking=True)]
        finally:
            await c.aclose()
        return reply, pieces

    reply, pieces = asyncio.run(talk())
    assert (reply, reply.reasoning) == (SAID, THOUGHT)
    assert "".join(p for p in pieces if isinstance(p, Thought)) == THOUGHT
    assert "".join(p for p in pieces if not isinstance(p, Thought)) == SAID
    kept = [(e.content, e.reasoning) for e in Store(store_url).entries("s") if e.role != "user"]
    assert kept == [(SAID, THOUGHT), (SAID, THOUGHT)]


@pytest.mark.parametrize(
    ("dialect", "line"),
    [  # the other spellings servers use
        ("openai", {"choices": [{"index": 0, "delta": {"reasoning": "hm"}}]}),  # vLLM >= 0.10
        ("openai", {"choices": [{"index": 0, "message": {"reasoning_content": "hm"}}]}),  # whole
        ("ollama", {"model": "m", "response": "", "thinking": "hm", "done": False}),  # generate
    ],
)
def test_thinking_in_the_other_places_servers_put_it(dialect, line):
    from llmkit.client.stream import ReplyReader

    text = json.dumps(line)
    chunks = ReplyReader(dialect).feed(f"data: {text}" if dialect == "openai" else text)
    assert [(c.reasoning, c.text) for c in chunks] == [("hm", "")]
