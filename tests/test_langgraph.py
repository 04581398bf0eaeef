"""``LlmkitCheckpointer``: LangGraph threads in the conversation store, on a real
SQLite file and the suite's real PostgreSQL, resumed in new processes, driving
the real server through ``langchain_openai``."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from click.testing import CliRunner
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command, interrupt

from llmkit.cli.main import cli
from llmkit.errors import StoreError
from llmkit.integrations.langgraph import LlmkitCheckpointer
from llmkit.memory.store import Store

MODEL = "SmolLM2-135M-Instruct"


def echo(state: MessagesState) -> dict:
    """A deterministic model: says how many messages it was shown and the last one."""
    last = state["messages"][-1].content
    return {"messages": [AIMessage(f"{len(state['messages'])} so far, last: {last}")]}


def echo_graph(checkpointer: LlmkitCheckpointer):
    graph = StateGraph(MessagesState).add_node("model", echo).add_edge(START, "model")
    return graph.compile(checkpointer=checkpointer)


def thread(name: object) -> dict:
    return {"configurable": {"thread_id": name}}


def said(messages) -> list[tuple[str, str]]:
    return [(m.type, m.content) for m in messages]


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'graph.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The store on each backend: a SQLite file, a fresh PostgreSQL database."""
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")


# -- a thread outlives its process --------------------------------------------------------

# One turn of a LangGraph chat, in a process of its own: the model is the real server
# (``base_url`` given) or the echo node; prints the thread's messages after the turn.
TURN = """
import json, sys
from langgraph.graph import START, MessagesState, StateGraph
from llmkit.integrations.langgraph import LlmkitCheckpointer
from tests.test_langgraph import echo

store, thread_id, text, base_url = sys.argv[1:5]
if base_url:
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(base_url=base_url, api_key="unused", model="SmolLM2-135M-Instruct",
                     max_tokens=8, temperature=0)
    node = lambda state: {"messages": [llm.invoke(state["messages"])]}
else:
    node = echo
graph = StateGraph(MessagesState).add_node("model", node).add_edge(START, "model")
with LlmkitCheckpointer(store) as saver:
    app = graph.compile(checkpointer=saver)
    out = app.invoke({"messages": [("user", text)]}, {"configurable": {"thread_id": thread_id}})
print(json.dumps([[m.type, m.content] for m in out["messages"]]))
"""


def turn(store: str, thread_id: str, text: str, base_url: str = "") -> list[list[str]]:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", TURN, store, thread_id, text, base_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        check=True,
    ).stdout
    return json.loads(out)


def requests_sent(server) -> list[dict]:
    """The generation requests the server logged (``--log-requests``), oldest first."""
    found = []
    for line in server.log().splitlines():
        _, sep, rest = line.partition("llmkit.requests: request: ")
        if sep:
            found.append(json.loads(rest))
    return found


def test_a_thread_resumed_in_a_new_process_sends_the_model_its_history(server, sqlite_url):
    url = sqlite_url
    name = f"Ada-{uuid.uuid4().hex[:6]}"
    first = turn(url, "ada", f"My name is {name}.", server.v1)
    assert [t for t, _ in first] == ["human", "ai"] and first[1][1]
    second = turn(url, "ada", "What is my name?", server.v1)
    assert second[:2] == first
    assert [t for t, _ in second] == ["human", "ai", "human", "ai"]
    # the second process's request to the real server carried the first turn
    asked = [r for r in requests_sent(server) if "What is my name?" in json.dumps(r)][-1]
    contents = [m["content"] for m in asked["messages"]]
    assert contents == [f"My name is {name}.", first[1][1], "What is my name?"]
    # and the thread is a conversation in the store, in order
    with Store(url) as store:
        entries = store.entries("langgraph:ada")
    assert [(e.role, e.content) for e in entries] == [
        ({"human": "user", "ai": "assistant"}[t], c) for t, c in second
    ]


def test_a_thread_resumed_in_a_new_process_on_postgresql(pg_url):
    assert turn(pg_url, "pg", "one") == [["human", "one"], ["ai", "1 so far, last: one"]]
    second = turn(pg_url, "pg", "two")
    assert second[2:] == [["human", "two"], ["ai", "3 so far, last: two"]]
    assert turn(pg_url, "other", "alone") == [["human", "alone"], ["ai", "1 so far, last: alone"]]
    with Store(pg_url) as store:
        assert [e.content for e in store.entries("langgraph:pg")] == [c for _, c in second]
        assert {c.name for c in store.list()} == {"langgraph:pg", "langgraph:other"}
    with LlmkitCheckpointer(pg_url) as saver:
        saver.delete_thread("pg")
        assert saver.get_tuple(thread("pg")) is None
        assert saver.get_tuple(thread("other")) is not None
        assert [c.name for c in saver.store.list()] == ["langgraph:other"]


# -- the mirror in llmkit sessions ---------------------------------------------------------


def test_the_thread_shows_in_llmkit_sessions(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    monkeypatch.delenv("LLMKIT_STORE", raising=False)
    with LlmkitCheckpointer() as saver:  # the default store: the data directory's file
        app = echo_graph(saver)
        app.invoke({"messages": [("user", "Where is the invoice?")]}, thread("work"))
        app.invoke({"messages": [("user", "Thanks!")]}, thread("work"))
    assert Path(tmp_path / "llmkit.db").exists()
    listed = CliRunner().invoke(cli, ["sessions", "list"], catch_exceptions=False)
    row = next(line.split() for line in listed.output.splitlines() if "langgraph:work" in line)
    assert row[0] == "langgraph:work" and "2" in row  # two user turns
    shown = CliRunner().invoke(cli, ["sessions", "show", "langgraph:work"], catch_exceptions=False)
    assert shown.exit_code == 0
    text = shown.output
    assert text.index("Where is the invoice?") < text.index("1 so far, last: Where is the")
    assert text.index("1 so far") < text.index("Thanks!") < text.index("3 so far, last: Thanks!")


def test_the_mirror_follows_edits_and_removals(url):
    from langchain_core.messages import RemoveMessage

    with LlmkitCheckpointer(url) as saver:
        app = echo_graph(saver)
        state = app.invoke({"messages": [("user", "a")]}, thread("t"))
        app.invoke({"messages": [("user", "b")]}, thread("t"))
        first_ids = [e.id for e in saver.store.entries("langgraph:t")]
        # drop the first answer, as a trimming node would
        app.update_state(thread("t"), {"messages": [RemoveMessage(id=state["messages"][1].id)]})
        entries = saver.store.entries("langgraph:t")
        assert [e.content for e in entries] == ["a", "b", "3 so far, last: b"]
        assert entries[0].id == first_ids[0]  # the unchanged head is kept, not rewritten
        final = app.get_state(thread("t")).values["messages"]
        assert [e.content for e in entries] == [m.content for m in final]


def test_a_failed_conversation_write_leaves_no_checkpoint(sqlite_url):
    url = sqlite_url
    with LlmkitCheckpointer(url) as saver:
        app = echo_graph(saver)
        app.invoke({"messages": [("user", "kept")]}, thread("t"))
        db = url.removeprefix("sqlite:///")
        with sqlite3.connect(db) as raw:  # the database refuses new messages from now on
            raw.execute(
                "CREATE TRIGGER no_more BEFORE INSERT ON messages "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        with pytest.raises(StoreError, match="refused"):
            app.invoke({"messages": [("user", "lost")]}, thread("t"))
        # The input checkpoint (messages unchanged, nothing to mirror) went in; the
        # step's checkpoint holding "lost" did not, nor any entry of it.
        stored = [
            t.checkpoint["channel_values"].get("messages", []) for t in saver.list(thread("t"))
        ]
        assert stored and all("lost" not in [m.content for m in ms] for ms in stored)
        assert said(stored[0]) == [("human", "kept"), ("ai", "1 so far, last: kept")]
        assert [e.content for e in saver.store.entries("langgraph:t")] == [
            "kept",
            "1 so far, last: kept",
        ]


# -- async ---------------------------------------------------------------------------------


def test_ainvoke_and_astream_persist_like_invoke(url):
    async def run() -> list:
        with LlmkitCheckpointer(url) as saver:
            app = echo_graph(saver)
            await app.ainvoke({"messages": [("user", "one")]}, thread("a"))
            chunks = [
                c
                async for c in app.astream(
                    {"messages": [("user", "two")]}, thread("a"), stream_mode="values"
                )
            ]
            listed = [t async for t in saver.alist(thread("a"), limit=2)]
            assert listed[0].config == (await saver.aget_tuple(thread("a"))).config
            await saver.adelete_thread("gone")  # no such thread: nothing happens
            return chunks

    chunks = asyncio.run(run())
    assert said(chunks[-1]["messages"]) == [
        ("human", "one"),
        ("ai", "1 so far, last: one"),
        ("human", "two"),
        ("ai", "3 so far, last: two"),
    ]
    with LlmkitCheckpointer(url) as saver:  # a fresh saver, sync: it was all committed
        assert said(echo_graph(saver).get_state(thread("a")).values["messages"]) == said(
            chunks[-1]["messages"]
        )

        async def delete() -> None:
            await saver.adelete_thread("a")

        asyncio.run(delete())
        assert saver.get_tuple(thread("a")) is None and saver.store.list() == []


# -- list ------------------------------------------------------------------------------------


def test_list_filters_before_and_limit(url):
    with LlmkitCheckpointer(url) as saver:
        app = echo_graph(saver)
        for text in ("one", "two"):
            app.invoke({"messages": [("user", text)]}, thread("x"))
        app.invoke(
            {"messages": [("user", "y")]}, {"configurable": {"thread_id": "y", "who": "ada"}}
        )
        xs = list(saver.list(thread("x")))
        # per invoke: the input checkpoint, then one per step (START, the model)
        assert [t.metadata["step"] for t in xs] == [4, 3, 2, 1, 0, -1]
        ids = [t.config["configurable"]["checkpoint_id"] for t in xs]
        assert ids == sorted(ids, reverse=True)
        assert [t.config for t in saver.list(thread("x"), limit=2)] == [t.config for t in xs[:2]]
        assert [t.config for t in saver.list(thread("x"), before=xs[1].config)] == [
            t.config for t in xs[2:]
        ]
        assert [t.config for t in saver.list(thread("x"), before=xs[1].config, limit=1)] == [
            xs[2].config
        ]
        inputs = list(saver.list(thread("x"), filter={"source": "input"}))
        assert [t.metadata["step"] for t in inputs] == [2, -1]
        assert [t.config for t in saver.list(thread("x"), filter={"source": "loop"}, limit=1)] == [
            xs[0].config
        ]
        assert list(saver.list(thread("x"), filter={"source": "nope"})) == []
        # no config: every thread; a config value becomes metadata, filterable
        assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {"x", "y"}
        by_ada = list(saver.list(None, filter={"who": "ada"}))
        assert by_ada and {t.config["configurable"]["thread_id"] for t in by_ada} == {"y"}
        # a checkpoint's parent is the one before it
        assert all(a.parent_config == b.config for a, b in itertools.pairwise(xs))
        assert xs[-1].parent_config is None


# -- pending writes: interrupted runs resume where they stopped ------------------------------


class Fanout(TypedDict):
    done: Annotated[list[str], lambda a, b: a + b]


def test_writes_of_a_finished_task_survive_a_failed_sibling(url):
    runs: list[str] = []
    fail = [True]

    def steady(state: Fanout) -> dict:
        runs.append("steady")
        return {"done": ["steady"]}

    def flaky(state: Fanout) -> dict:
        runs.append("flaky")
        if fail[0]:
            raise RuntimeError("flaky failed")
        return {"done": ["flaky"]}

    graph = (
        StateGraph(Fanout)
        .add_node("steady", steady)
        .add_node("flaky", flaky)
        .add_edge(START, "steady")
        .add_edge(START, "flaky")
    )
    with LlmkitCheckpointer(url) as saver:
        with pytest.raises(RuntimeError, match="flaky failed"):
            graph.compile(checkpointer=saver).invoke({"done": []}, thread("f"))
        head = saver.get_tuple(thread("f"))
        channels = [(c, v) for _, c, v in head.pending_writes]
        assert ("done", ["steady"]) in channels
        assert any(c == "__error__" for c, _ in channels)
    fail[0] = False
    with LlmkitCheckpointer(url) as saver:  # a new saver: the writes came from the database
        out = graph.compile(checkpointer=saver).invoke(None, thread("f"))
    assert sorted(out["done"]) == ["flaky", "steady"]
    assert runs == ["steady", "flaky", "flaky"] or runs == ["flaky", "steady", "flaky"]


def test_an_interrupted_thread_resumes_with_a_new_saver(url):
    def ask(state: MessagesState) -> dict:
        answer = interrupt("Approve?")
        return {"messages": [AIMessage(f"approved: {answer}")]}

    graph = StateGraph(MessagesState).add_node("ask", ask).add_edge(START, "ask")
    with LlmkitCheckpointer(url) as saver:
        out = graph.compile(checkpointer=saver).invoke({"messages": [("user", "go")]}, thread("i"))
        assert out["__interrupt__"][0].value == "Approve?"
        head = saver.get_tuple(thread("i"))
        assert [c for _, c, _ in head.pending_writes] == ["__interrupt__"]
    with LlmkitCheckpointer(url) as saver:
        app = graph.compile(checkpointer=saver)
        assert app.get_state(thread("i")).next == ("ask",)
        out = app.invoke(Command(resume="yes"), thread("i"))
        assert said(out["messages"]) == [("human", "go"), ("ai", "approved: yes")]
        assert [e.content for e in saver.store.entries("langgraph:i")] == ["go", "approved: yes"]


# -- the saver's contract, called directly ----------------------------------------------------


def _checkpoint(cid: str, versions: dict, values: dict) -> dict:
    return {
        "v": 4,
        "id": cid,
        "ts": "2026-01-01T00:00:00+00:00",
        "channel_values": values,
        "channel_versions": versions,
        "versions_seen": {"model": dict(versions)},
        "updated_channels": list(versions),
    }


def test_put_get_versions_parents_and_namespaces(url):
    with LlmkitCheckpointer(url) as saver:
        root = {"configurable": {"thread_id": "c", "checkpoint_ns": ""}}
        v1 = saver.get_next_version(None, None)
        v2 = saver.get_next_version(v1, None)
        assert v2 > v1
        msgs = [HumanMessage("hi", id="1")]
        c1 = saver.put(
            root, _checkpoint("0001", {"messages": v1}, {"messages": msgs}), {"step": 0}, {}
        )
        c2 = saver.put(
            c1, _checkpoint("0002", {"messages": v2}, {"messages": msgs}), {"step": 1}, {}
        )
        got = saver.get_tuple(thread("c"))  # no id: the newest
        assert got.config == c2 and got.parent_config == c1
        assert got.checkpoint["channel_versions"] == {"messages": v2}
        assert got.checkpoint["versions_seen"] == {"model": {"messages": v2}}
        assert got.checkpoint["channel_values"]["messages"] == msgs  # typed round trip
        assert got.metadata == {"step": 1}
        older = saver.get_tuple(c1)
        assert older.checkpoint["channel_versions"] == {"messages": v1}
        assert older.parent_config is None
        assert saver.get_tuple({"configurable": {"thread_id": "c", "checkpoint_id": "9"}}) is None
        # a subgraph's namespace is its own: not the root's newest, not mirrored
        sub = {"configurable": {"thread_id": "c", "checkpoint_ns": "inner:1"}}
        saver.put(sub, _checkpoint("0003", {}, {"messages": [HumanMessage("deep")]}), {}, {})
        assert saver.get_tuple(thread("c")).config == c2
        assert saver.get_tuple(sub).config["configurable"]["checkpoint_id"] == "0003"
        assert [e.content for e in saver.store.entries("langgraph:c")] == ["hi"]
        # the same id again replaces the checkpoint
        saver.put(c1, _checkpoint("0002", {"messages": v2}, {}), {"step": 9}, {})
        assert saver.get_tuple(c2).metadata == {"step": 9}


def test_put_writes_keeps_regular_writes_and_replaces_special_ones(url):
    with LlmkitCheckpointer(url) as saver:
        c1 = saver.put(thread("w"), _checkpoint("0001", {}, {}), {}, {})
        saver.put_writes(c1, [("a", 1), ("b", 2)], task_id="t2", task_path="~b")
        saver.put_writes(c1, [("a", 10)], task_id="t1", task_path="~a")
        saver.put_writes(c1, [("a", 99)], task_id="t1", task_path="~a")  # a retry: kept first
        saver.put_writes(c1, [("__error__", "first")], task_id="t1", task_path="~a")
        saver.put_writes(c1, [("__error__", "second")], task_id="t1", task_path="~a")
        writes = saver.get_tuple(c1).pending_writes
        # writes_sort_key order: task path, then task id, then index
        assert writes == [
            ("t1", "__error__", "second"),
            ("t1", "a", 10),
            ("t2", "a", 1),
            ("t2", "b", 2),
        ]
        assert next(saver.list(c1)).pending_writes == writes


def test_thread_ids_beyond_a_conversation_name_are_kept_unmirrored(url):
    long_id = "x" * 300
    with LlmkitCheckpointer(url) as saver:
        echo_graph(saver).invoke({"messages": [("user", "hi")]}, thread(long_id))
        assert saver.get_tuple(thread(long_id)) is not None
        assert saver.store.list() == []
        saver.delete_thread(long_id)
        assert saver.get_tuple(thread(long_id)) is None


def test_the_mirror_can_be_turned_off(url):
    with LlmkitCheckpointer(url, mirror_prefix=None) as saver:
        echo_graph(saver).invoke({"messages": [("user", "hi")]}, thread("quiet"))
        assert saver.store.list() == []


def test_a_store_given_is_shared_and_left_open(url):
    with Store(url) as store:
        with LlmkitCheckpointer(store) as saver:
            echo_graph(saver).invoke({"messages": [("user", "hi")]}, thread("s"))
        assert store.get("langgraph:s").turns == 1  # still usable: the saver didn't close it


def test_copy_thread_and_prune(url):
    with LlmkitCheckpointer(url) as saver:
        app = echo_graph(saver)
        for text in ("one", "two"):
            app.invoke({"messages": [("user", text)]}, thread("src"))
        saver.put_writes(saver.get_tuple(thread("src")).config, [("x", 1)], task_id="t")
        source = list(saver.list(thread("src")))
        saver.copy_thread("src", "dst")
        copied = list(saver.list(thread("dst")))
        assert [t.checkpoint for t in copied] == [t.checkpoint for t in source]
        assert [t.pending_writes for t in copied] == [t.pending_writes for t in source]
        assert copied[0].parent_config["configurable"]["thread_id"] == "dst"
        assert [e.content for e in saver.store.entries("langgraph:dst")] == [
            e.content for e in saver.store.entries("langgraph:src")
        ]
        # the copy goes its own way
        out = app.invoke({"messages": [("user", "three")]}, thread("dst"))
        assert len(out["messages"]) == 6
        assert len(app.get_state(thread("src")).values["messages"]) == 4

        saver.prune(["src"])
        kept = list(saver.list(thread("src")))
        assert [t.config for t in kept] == [source[0].config]
        assert kept[0].pending_writes == [("t", "x", 1)]
        assert len(app.get_state(thread("src")).values["messages"]) == 4  # the state is whole
        assert len(list(saver.list(thread("dst")))) == len(source) + 3  # untouched
        saver.prune(["dst"], strategy="delete")
        assert list(saver.list(thread("dst"))) == []
        assert [c.name for c in saver.store.list()] == ["langgraph:src"]
        with pytest.raises(ValueError, match="keep_latest or delete"):
            saver.prune(["src"], strategy="oldest")


def test_thread_ids_that_are_not_strings(url):
    tid = uuid.uuid4()
    with LlmkitCheckpointer(url) as saver:
        app = echo_graph(saver)
        for key in (42, tid):
            app.invoke({"messages": [("user", "hi")]}, thread(key))
            app.invoke({"messages": [("user", "again")]}, thread(key))
            assert len(app.get_state(thread(key)).values["messages"]) == 4
        assert {c.name for c in saver.store.list()} == {"langgraph:42", f"langgraph:{tid}"}
        saver.delete_thread(42)  # type: ignore[arg-type]
        assert app.get_state(thread(42)).values == {}
        assert [c.name for c in saver.store.list()] == [f"langgraph:{tid}"]
