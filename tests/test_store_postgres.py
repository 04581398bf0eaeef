"""The conversation store on a real PostgreSQL (Debian's, started on loopback for
this run), not assumed to work because SQLite does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmkit import Chat
from llmkit.errors import ConversationExistsError, ConversationNotFoundError
from llmkit.memory.store import Store


def test_conversations_round_trip(pg_url):
    with Store(pg_url) as store:
        store.create("work", model="m", system="Be terse.", memory="window:3")
        store.append("work", "user", "Où est la facture ?")
        store.append("work", "assistant", "Dans le dossier.", interrupted=True)
        with pytest.raises(ConversationExistsError):
            store.create("work")
        conv = store.get("work")
        assert (conv.model, conv.system, conv.memory, conv.turns) == (
            "m",
            "Be terse.",
            "window:3",
            1,
        )
        entries = store.entries("work")
        assert [e.role for e in entries] == ["user", "assistant"] and entries[1].interrupted
        assert [n for n, _ in store.search("FACTURE")] == ["work"]  # case-insensitive, accents kept
        data = store.export("work")
        store.import_(data, name="copy")
        assert [e.content for e in store.entries("copy")] == [e.content for e in entries]
        store.rename("copy", "renamed")
        store.delete("renamed")
        with pytest.raises(ConversationNotFoundError):
            store.get("renamed")
    with Store(pg_url) as again:  # migrations already applied: opening twice is fine
        assert [c.name for c in again.list()] == ["work"]


_WRITER = """
import sys
from llmkit.memory.store import Store
store = Store(sys.argv[1])
for i in range(50):
    store.append("shared", "user", f"{sys.argv[2]}-{i}")
"""


def test_two_processes_writing_lose_nothing(pg_url):
    Store(pg_url).create("shared")
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, pg_url, who]) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    contents = [e.content for e in Store(pg_url).entries("shared")]
    assert len(contents) == 100
    for who in ("a", "b"):
        assert [c for c in contents if c.startswith(who)] == [f"{who}-{i}" for i in range(50)]


def test_chat_keeps_its_conversation_in_postgres(server, pg_url):
    chat = Chat(server.url, session="pg", max_tokens=6, store=pg_url)
    chat.send("Hello.")
    assert [e.role for e in Store(pg_url).entries("pg")] == ["user", "assistant"]


def test_responses_chain_branch_and_evict_in_postgres(pg_url):
    from llmkit.core.types import Message
    from llmkit.errors import ResponseNotFoundError
    from llmkit.memory.responses import ResponseStore

    def save(store, rid, previous):
        messages = [Message("user", f"q {rid}"), Message("assistant", f"a {rid}")]
        out = {"id": rid, "output": []}
        return store.save(rid, previous_id=previous, model="m", input_items=[], response=out,
                          messages=messages)  # fmt: skip

    with ResponseStore(pg_url, max_count=3) as store:
        name = save(store, "resp_1", None)
        save(store, "resp_2", "resp_1")
        save(store, "resp_3", "resp_1")  # a branch
        assert [t.id for t in store.chain("resp_3")] == ["resp_1", "resp_3"]
        assert store.get(name).turns == 3
        save(store, "resp_4", "resp_2")  # past the count: resp_1 is evicted
        with pytest.raises(ResponseNotFoundError):
            store.response("resp_1")
        assert [t.id for t in store.chain("resp_4")] == ["resp_2", "resp_4"]
        kept = [e.content for e in store.entries(name)]
        assert kept == [f"{x} resp_{n}" for n in (2, 3, 4) for x in ("q", "a")]


def test_the_reasoning_column_is_added_to_an_older_postgres_store(pg_url):
    from tests.test_chat_thinking import check_migrated, old_database

    old_database(pg_url)
    check_migrated(pg_url)
