"""The conversation store, on real SQLite files: CRUD, transcripts, migrations,
two writers at once, a writer killed mid-write, and database failures."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmkit.core.types import Message
from llmkit.errors import (
    ConversationExistsError,
    ConversationNotFoundError,
    InvalidRequestError,
    StoreError,
)
from llmkit.memory import database, migrations
from llmkit.memory.database import default_store_url
from llmkit.memory.store import Store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "home" / "llmkit.db"


@pytest.fixture
def store(db: Path):
    s = Store(default_store_url(db.parent))
    yield s
    s.close()


def contents(store: Store, name: str) -> list[str]:
    return [e.content for e in store.entries(name)]


# -- conversations and messages ----------------------------------------------------------


def test_opens_in_a_new_directory_with_wal_and_foreign_keys(db: Path, store: Store) -> None:
    assert default_store_url(db.parent) == f"sqlite:///{db}"
    assert db.exists()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with store._engine.connect() as conn:  # the store's own connections
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_create_get_update(store: Store) -> None:
    c = store.create("trip", model="smol", url="http://x", system="Be brief.", memory="window:3")
    assert (c.name, c.model, c.url, c.system, c.memory, c.turns) == (
        "trip",
        "smol",
        "http://x",
        "Be brief.",
        "window:3",
        0,
    )
    assert c.summary is None and c.summary_upto is None
    assert c.created_at.tzinfo is UTC and c.created_at == c.updated_at
    assert store.get("trip") == c
    assert store.get_or_create("trip", model="other") == c
    assert store.get_or_create("new", memory="tokens").memory == "tokens"

    c2 = store.update("trip", model="big")
    assert (c2.model, c2.system, c2.memory) == ("big", "Be brief.", "window:3")
    c3 = store.update("trip", system=None, memory="summary")
    assert (c3.model, c3.system, c3.memory) == ("big", None, "summary")
    assert c3.updated_at == c.updated_at  # an edit is not a use
    with pytest.raises(InvalidRequestError, match="window:N"):
        store.update("trip", memory="window")
    with pytest.raises(InvalidRequestError, match="window:N"):
        store.create("x", memory="lots")


def test_append_and_entries(store: Store) -> None:
    store.create("c", system="sys")
    e1 = store.append("c", "user", "Hello")
    e2 = store.append("c", "assistant", "Hi th", interrupted=True)
    e3 = store.append("c", "user", "again")
    assert e1.id < e2.id < e3.id
    assert store.entries("c") == [e1, e2, e3]
    assert [e.interrupted for e in store.entries("c")] == [False, True, False]
    assert e1.message == Message("user", "Hello") and e2.created_at.tzinfo is UTC
    c = store.get("c")
    assert c.turns == 2 and c.updated_at == e3.created_at
    with pytest.raises(InvalidRequestError, match="role"):
        store.append("c", "robot", "beep")  # type: ignore[arg-type]


def test_list_and_last_by_last_use(store: Store) -> None:
    assert store.list() == [] and store.last() is None
    for name in ("a", "b", "c"):
        store.create(name)
    assert [c.name for c in store.list()] == ["c", "b", "a"]
    store.append("a", "user", "back to a")
    assert [c.name for c in store.list()] == ["a", "c", "b"]
    assert store.last().name == "a" and store.last().turns == 1


def test_delete_entries_from_for_retry(store: Store) -> None:
    store.create("c")
    turns = [("user", "q1"), ("assistant", "r1"), ("user", "q2"), ("assistant", "r2")]
    ids = [store.append("c", role, text).id for role, text in turns]
    store.set_summary("c", "they said q1", ids[1])
    store.delete_entries_from("c", ids[3])  # /retry the last reply
    assert contents(store, "c") == ["q1", "r1", "q2"]
    assert store.get("c").summary == "they said q1"
    store.delete_entries_from("c", ids[1])  # the summary covered r1: it goes too
    assert contents(store, "c") == ["q1"]
    assert (store.get("c").summary, store.get("c").summary_upto) == (None, None)
    assert store.append("c", "assistant", "r1'").id > ids[3]  # ids never come back
    with pytest.raises(InvalidRequestError, match="no entry"):
        store.delete_entries_from("c", ids[3])


def test_set_summary(store: Store) -> None:
    store.create("c")
    e = store.append("c", "user", "q")
    store.set_summary("c", "S", e.id)
    assert (store.get("c").summary, store.get("c").summary_upto) == ("S", e.id)
    store.append("c", "assistant", "r")
    assert store.get("c").summarized(store.entries("c")) == 1


def test_rename_and_delete(store: Store) -> None:
    store.create("old")
    store.create("other")
    store.append("old", "user", "keep me")
    assert store.rename("old", "new").name == "new"
    assert contents(store, "new") == ["keep me"]
    with pytest.raises(ConversationNotFoundError):
        store.get("old")
    with pytest.raises(ConversationExistsError) as e:
        store.rename("new", "other")
    assert e.value.status == 409 and "'other' already exists" in e.value.message
    store.delete("new")
    with pytest.raises(ConversationNotFoundError):
        store.entries("new")
    assert store.search("keep") == []
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as raw:
        assert raw.execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_errors(store: Store) -> None:
    with pytest.raises(ConversationNotFoundError) as e:
        store.get("nope")
    assert e.value.status == 404 and "'nope'" in e.value.message
    assert "llmkit sessions list" in e.value.message
    for call in (store.entries, store.delete, lambda n: store.append(n, "user", "x")):
        with pytest.raises(ConversationNotFoundError):
            call("nope")
    store.create("dup")
    with pytest.raises(ConversationExistsError) as e:
        store.create("dup")
    assert e.value.status == 409
    for bad in ("", " lead", "trail ", "x" * 201):
        with pytest.raises(InvalidRequestError, match="conversation name"):
            store.create(bad)
    store.create("x" * 200)


def test_search(store: Store) -> None:
    store.create("a")
    store.create("b")
    store.append("a", "user", "I like Trains")
    store.append("b", "user", "TRAINS and Zürich, 100% sure")
    store.append("b", "assistant", "ok")
    hits = store.search("trains")
    assert [(n, e.content) for n, e in hits] == [
        ("a", "I like Trains"),
        ("b", "TRAINS and Zürich, 100% sure"),
    ]
    assert [n for n, _ in store.search("ZÜRICH")] == ["b"]  # beyond ASCII too
    assert [n for n, _ in store.search("100%")] == ["b"]  # % and _ are literal
    assert store.search("1_0") == [] and [n for n, _ in store.search("%")] == ["b"]
    with pytest.raises(InvalidRequestError):
        store.search("")


# -- transcripts -------------------------------------------------------------------------


def test_export_import_markdown_round_trip(store: Store) -> None:
    store.create("src", model="smol", system="Be brief.", memory="summary:2")
    store.append("src", "user", "q1")
    covered = store.append("src", "assistant", "r1")
    store.append("src", "user", "q2")
    store.append("src", "assistant", "r2 cut sh", interrupted=True)
    store.set_summary("src", "q1 was asked", covered.id)

    doc = store.export("src")
    doc = json.loads(json.dumps(doc))  # JSON-able
    assert doc["name"] == "src" and doc["summary_covers"] == 2
    assert [m["interrupted"] for m in doc["messages"]] == [False, False, False, True]

    copy = store.import_(doc, name="copy")
    src = store.get("src")
    for field in ("model", "system", "memory", "summary", "created_at", "updated_at", "turns"):
        assert getattr(copy, field) == getattr(src, field)
    entries = store.entries("copy")
    assert [(e.role, e.content, e.interrupted, e.created_at) for e in entries] == [
        (e.role, e.content, e.interrupted, e.created_at) for e in store.entries("src")
    ]
    assert copy.summary_upto == entries[1].id
    assert {**store.export("copy"), "name": "src"} == doc

    with pytest.raises(ConversationExistsError):
        store.import_(doc)  # "src" is taken
    md = store.to_markdown("src")
    assert md.startswith("# src\n") and "- model: smol" in md
    assert "## System\n\nBe brief." in md and "## Summary of earlier turns\n\nq1 was asked" in md
    assert "## User\n\nq2\n\n## Assistant\n\nr2 cut sh\n\n*(interrupted" in md


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ([], "no 'messages' list"),
        ({"name": "x"}, "no 'messages' list"),
        ({"name": "x", "messages": [{"role": "wizard", "content": "hi"}]}, "message 0"),
        ({"name": "x", "messages": [{"role": "user"}]}, "content"),
        ({"name": "x", "messages": [], "memory": "lots"}, "memory strategy"),
        ({"name": "x", "messages": [], "created_at": "yesterday"}, "timestamp"),
        ({"messages": []}, "no 'name'"),
        ({"name": "x", "version": 9, "messages": []}, "version"),
    ],
)
def test_import_rejects_bad_documents(store: Store, doc: object, why: str) -> None:
    with pytest.raises(InvalidRequestError, match=why):
        store.import_(doc)  # type: ignore[arg-type]
    assert store.list() == []


def test_import_minimal_document(store: Store) -> None:
    c = store.import_({"name": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert (c.memory, c.turns, c.created_at.tzinfo) == ("buffer", 1, UTC)


# -- migrations --------------------------------------------------------------------------


def test_migrations_recorded_once(db: Path, store: Store, monkeypatch) -> None:
    def applied() -> list[str]:
        with sqlite3.connect(db) as raw:
            return [r[0] for r in raw.execute("SELECT name FROM _llmkit_migrations")]  # any order

    shipped = [fn.__name__ for fn in migrations.MIGRATIONS]
    assert shipped[0] == "m001_initial" and applied() == shipped
    store.create("kept")
    Store(store.url).close()  # reopening applies nothing again
    assert applied() == shipped

    def m999_tags(conn: sa.Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE conversations ADD COLUMN tags TEXT")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, m999_tags))
    Store(store.url).close()
    Store(store.url).close()
    assert applied() == [*shipped, "m999_tags"]
    assert store.get("kept").name == "kept"
    with sqlite3.connect(db) as raw:
        cols = [r[1] for r in raw.execute("PRAGMA table_info(conversations)")]
    assert cols.count("tags") == 1


# -- several processes -------------------------------------------------------------------

WRITER = """
import sys
from llmkit.memory.store import Store
url, tag, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = Store(url)
store.get_or_create("shared")
for i in range(n):
    e = store.append("shared", "user", f"{tag}-{i}:" + "x" * size)
    print(e.id, i, flush=True)  # written only once the turn is committed
"""


def writer(url: str, tag: str, n: int, size: int = 0) -> subprocess.Popen:
    args = [sys.executable, "-c", WRITER, url, tag, str(n), str(size)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_append_at_once(db: Path) -> None:
    url = default_store_url(db.parent)  # both create the database and migrate at once
    procs = [writer(url, "a", 100), writer(url, "b", 100)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert len(out.splitlines()) == 100
    with Store(url) as store:
        got = contents(store, "shared")
        assert len(got) == 200 and store.get("shared").turns == 200
        for tag in "ab":
            assert [c for c in got if c.startswith(tag)] == [f"{tag}-{i}:" for i in range(100)]
        assert [e.id for e in store.entries("shared")] == sorted(
            e.id for e in store.entries("shared")
        )
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_kill_9_mid_write_keeps_every_committed_turn(db: Path) -> None:
    url = default_store_url(db.parent)
    size = 200_000  # big turns: the kill most likely lands inside a write
    reported: list[int] = []  # entry ids a writer saw committed
    for round_ in range(3):
        p = writer(url, f"r{round_}", 10_000, size)
        lines = []
        while len(lines) < 5 + 3 * round_:
            lines.append(p.stdout.readline())
            assert lines[-1], p.stderr.read()
        time.sleep(0.01 * round_)
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL
        reported += [int(ln.split()[0]) for ln in [*lines, *out.splitlines()]]
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with Store(url) as store:
            stored = {e.id: e.content for e in store.entries("shared")}
        for entry_id in reported:
            assert stored[entry_id].endswith("x" * size)  # present, whole
        assert all(len(c) > size for c in stored.values())  # nothing torn
    assert len(reported) >= 5 + 8 + 11


# -- database failures -------------------------------------------------------------------


def test_locked_database_is_a_store_error_and_changes_nothing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_S", 0.2)
    store = Store(default_store_url(db.parent))
    store.create("c")
    store.append("c", "user", "before")
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreError, match="locked") as e:
            store.append("c", "assistant", "blocked")
        assert e.value.status == 500 and "nothing was changed" in e.value.message
        assert contents(store, "c") == ["before"]  # readers are not blocked (WAL)
    finally:
        raw.execute("ROLLBACK")
        raw.close()
    store.append("c", "assistant", "after")
    assert contents(store, "c") == ["before", "after"]
    store.close()


def test_disk_full_import_leaves_no_half_conversation(store: Store) -> None:
    store.create("small")
    with store._engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    # A full disk, for this test's connections only: a page limit just above the file.
    def cap(dbapi_conn, _record) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 8}")

    sa.event.listen(store._engine, "connect", cap)
    store._engine.dispose()
    big = {"name": "big", "messages": [{"role": "user", "content": "x" * 50_000}] * 20}
    with pytest.raises(StoreError, match="full"):
        store.import_(big)
    sa.event.remove(store._engine, "connect", cap)
    store._engine.dispose()
    with pytest.raises(ConversationNotFoundError):
        store.get("big")
    assert [c.name for c in store.list()] == ["small"]


@pytest.mark.parametrize("url", ["nonsense://x", "postgresql+nodriver://u:secret@host/db"])
def test_bad_url_is_a_clear_error_without_the_password(url: str) -> None:
    with pytest.raises(InvalidRequestError, match="Can't use the store URL") as e:
        Store(url)
    assert "secret" not in e.value.message
