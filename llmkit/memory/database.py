"""Opening the conversation store's database: a SQLAlchemy engine for a URL,
set up on SQLite so that a store is safe across threads and processes.

On SQLite the journal is a write-ahead log (a process killed mid-write loses at
most its uncommitted transaction), writers take the write lock at ``BEGIN`` and
wait for it up to ``BUSY_TIMEOUT_S``, foreign keys are enforced, and ``lower()``
folds more than ASCII. Other databases (PostgreSQL) are used as they come.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from llmkit.env import Environment
from llmkit.errors import InvalidRequestError

BUSY_TIMEOUT_S = 10


def default_store_url(home: Path) -> str:
    """The SQLite file in llmkit's data directory (``llmkit.env``: ``LLMKIT_HOME``)."""
    return f"sqlite:///{Path(home) / 'llmkit.db'}"


def store_url(env: Environment) -> str:
    """The store every command, ``Chat`` and the server share: ``LLMKIT_STORE``,
    else the SQLite file in the data directory."""
    return env.store_url or default_store_url(env.data_dir)


def open_engine(url: str) -> sa.Engine:
    """An engine for ``url``; a typo or a missing driver is a clear error, and a
    SQLite file's directory is made."""
    try:
        parsed = sa.make_url(url)
        engine = sa.create_engine(parsed)
    except (ImportError, sa.exc.ArgumentError) as e:  # a typo, or no driver (psycopg)
        shown = "...@" + url.rsplit("@", 1)[1] if "@" in url else url  # hide a password
        hint = " (install its driver: psycopg for PostgreSQL)" * isinstance(e, ImportError)
        raise InvalidRequestError(f"Can't use the store URL '{shown}': {e}{hint}") from e
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        event.listen(engine, "begin", _begin)
    return engine


def _set_sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling would BEGIN lazily (DEFERRED), and a
    # deferred reader that later writes fails at once with "database is locked"
    # when another process wrote meanwhile; ``_begin`` below BEGINs itself instead.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    # WAL: readers don't block the writer, and a killed process can't tear a commit.
    # synchronous stays FULL (the default): a committed turn also survives power loss.
    _wal(cur)
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()
    # SQLite's own lower() folds ASCII only; search should find "Ürün" from "ürün".
    dbapi_conn.create_function(
        "lower", 1, lambda s: s.lower() if isinstance(s, str) else s, deterministic=True
    )


def _wal(cur: Any) -> None:
    """Switch a new database to WAL. Two processes creating the file at once race
    for this switch, and SQLite answers the loser SQLITE_BUSY at once, without its
    busy handler: wait for the winner here instead."""
    if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            busy = getattr(e, "sqlite_errorcode", None) in (
                sqlite3.SQLITE_BUSY,
                sqlite3.SQLITE_LOCKED,
            )
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _begin(conn: Connection) -> None:
    mode = "DEFERRED" if conn.get_execution_options().get("llmkit_read") else "IMMEDIATE"
    conn.exec_driver_sql(f"BEGIN {mode}")
