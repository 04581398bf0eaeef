"""LangGraph checkpoints in the conversation store's database, as opaque blobs.

The LangGraph saver (``llmkit/integrations/langgraph.py``) serialises; this
module only keeps rows: a checkpoint is a serde type tag plus bytes, and so is
its metadata and each pending write. It knows nothing of LangGraph, so the
store's layer stays free of it (and rows still never leave ``memory/``).

A thread's messages can be mirrored into a conversation in the same
transaction as the checkpoint (``put(..., mirror=...)``): a crash or a database
failure leaves neither the checkpoint nor the conversation half-updated. The
mirror is a view of the checkpoint: each put makes the conversation's entries
equal to the given messages, keeping the unchanged leading entries (their ids
and times) and rewriting only from the first difference.

Writes that must not be duplicated (a task's regular writes) use the
backends' ``ON CONFLICT DO NOTHING``; LangGraph's special writes (negative
``idx``: error, interrupt, resume) replace the stored one. Both SQLite and
PostgreSQL speak that clause; other backends are refused at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from llmkit.core.types import Message
from llmkit.errors import InvalidRequestError
from llmkit.memory.migrations import checkpoint_writes as W
from llmkit.memory.migrations import checkpoints as K
from llmkit.memory.migrations import conversations as C
from llmkit.memory.migrations import messages as M
from llmkit.memory.store import Store

Typed = tuple[str, bytes]  # a serde's (type tag, bytes)

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_BATCH = 200
_WRITE_KEY = ["thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"]


@dataclass(frozen=True)
class StoredWrite:
    task_id: str
    channel: str
    value: Typed
    task_path: str
    idx: int


@dataclass(frozen=True)
class StoredCheckpoint:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: Typed
    metadata: Typed
    writes: list[StoredWrite]  # in the order LangGraph replays them


@dataclass(frozen=True)
class Mirror:
    """The conversation to make equal to ``messages`` with the checkpoint."""

    name: str
    messages: Sequence[Message]


class CheckpointStore:
    """Checkpoints and pending writes, in ``store``'s database (SQLite or PostgreSQL)."""

    def __init__(self, store: Store) -> None:
        backend = store._engine.dialect.name
        if backend not in _INSERTS:
            raise InvalidRequestError(
                f"LangGraph checkpoints need SQLite or PostgreSQL, not {backend}."
            )
        self.store = store
        self._insert = _INSERTS[backend]

    # -- writes -----------------------------------------------------------------------

    def put(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        parent_id: str | None,
        checkpoint: Typed,
        metadata: Typed,
        *,
        mirror: Mirror | None = None,
    ) -> None:
        """Store a checkpoint (replacing one with the same id), and the mirror with it."""
        key = dict(thread_id=thread_id, checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id)
        row = dict(
            parent_id=parent_id,
            type=checkpoint[0],
            checkpoint=checkpoint[1],
            metadata_type=metadata[0],
            metadata=metadata[1],
            created_at=datetime.now(UTC),
        )
        stmt = self._insert(K).values(**key, **row)
        stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=row)
        with self.store._write() as conn:
            conn.execute(stmt)
            if mirror is not None:
                _sync_conversation(conn, mirror)

    def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: Sequence[StoredWrite],
    ) -> None:
        """Store a task's writes: a regular one (``idx >= 0``) is kept if already
        there (a retried task writes the same), a special one replaces."""
        if not writes:
            return
        key = dict(thread_id=thread_id, checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id)
        with self.store._write() as conn:
            for w in writes:
                row = dict(
                    channel=w.channel, type=w.value[0], value=w.value[1], task_path=w.task_path
                )
                stmt = self._insert(W).values(**key, task_id=w.task_id, idx=w.idx, **row)
                if w.idx >= 0:
                    stmt = stmt.on_conflict_do_nothing(index_elements=_WRITE_KEY)
                else:
                    stmt = stmt.on_conflict_do_update(index_elements=_WRITE_KEY, set_=row)
                conn.execute(stmt)

    def delete_thread(self, thread_id: str, *, mirror: str | None = None) -> None:
        """Drop the thread's checkpoints and writes (every namespace), and the
        conversation ``mirror`` if there is one."""
        with self.store._write() as conn:
            conn.execute(K.delete().where(K.c.thread_id == thread_id))
            conn.execute(W.delete().where(W.c.thread_id == thread_id))
            if mirror is not None:
                cid = conn.scalar(sa.select(C.c.id).where(C.c.name == mirror))
                if cid is not None:
                    conn.execute(M.delete().where(M.c.conversation_id == cid))
                    conn.execute(C.delete().where(C.c.id == cid))

    def copy_thread(self, source: str, target: str, *, mirror: Mirror | None = None) -> None:
        """Copy ``source``'s checkpoints and writes to thread ``target`` (rows the
        target already has under the same ids are kept), with ``mirror``."""
        with self.store._write() as conn:
            for table in (K, W):
                rows = [
                    r._asdict()
                    for r in conn.execute(table.select().where(table.c.thread_id == source))
                ]
                for row in rows:
                    row["thread_id"] = target
                if rows:
                    keys = [c.name for c in table.primary_key]
                    conn.execute(
                        self._insert(table).on_conflict_do_nothing(index_elements=keys), rows
                    )
            if mirror is not None:
                _sync_conversation(conn, mirror)

    def keep_latest(self, thread_ids: Sequence[str]) -> None:
        """Drop every checkpoint (and its writes) but each namespace's newest."""
        with self.store._write() as conn:
            newest = conn.execute(
                sa.select(K.c.thread_id, K.c.checkpoint_ns, sa.func.max(K.c.checkpoint_id))
                .where(K.c.thread_id.in_(list(thread_ids)))
                .group_by(K.c.thread_id, K.c.checkpoint_ns)
            ).all()
            for thread_id, ns, latest in newest:
                for table in (K, W):
                    conn.execute(
                        table.delete().where(
                            table.c.thread_id == thread_id,
                            table.c.checkpoint_ns == ns,
                            table.c.checkpoint_id < latest,
                        )
                    )

    # -- reads ------------------------------------------------------------------------

    def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> StoredCheckpoint | None:
        """That checkpoint, or the thread's newest in ``checkpoint_ns`` when no id."""
        where = [K.c.thread_id == thread_id, K.c.checkpoint_ns == checkpoint_ns]
        if checkpoint_id is not None:
            where.append(K.c.checkpoint_id == checkpoint_id)
        query = sa.select(K).where(*where).order_by(K.c.checkpoint_id.desc()).limit(1)
        with self.store._read() as conn:
            row = conn.execute(query).first()
            return None if row is None else _stored(row, _writes(conn, [row])[_key(row)])

    def list(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before_id: str | None = None,
        metadata_ok: Callable[[Typed], bool] | None = None,
        limit: int | None = None,
    ) -> list[StoredCheckpoint]:
        """Matching checkpoints, newest first.

        ``metadata_ok`` decides on each checkpoint's stored metadata: the filter is
        the caller's (LangGraph's metadata is serde bytes here), applied to the
        small metadata column before any checkpoint body is read.
        """
        where = []
        for col, value in (
            (K.c.thread_id, thread_id),
            (K.c.checkpoint_ns, checkpoint_ns),
            (K.c.checkpoint_id, checkpoint_id),
        ):
            if value is not None:
                where.append(col == value)
        if before_id is not None:
            where.append(K.c.checkpoint_id < before_id)
        heads = sa.select(K.c.thread_id, K.c.checkpoint_ns, K.c.checkpoint_id).where(*where)
        if metadata_ok is not None:
            heads = heads.add_columns(K.c.metadata_type, K.c.metadata)
        heads = heads.order_by(K.c.checkpoint_id.desc(), K.c.thread_id, K.c.checkpoint_ns)
        if metadata_ok is None and limit is not None:
            heads = heads.limit(limit)
        with self.store._read() as conn:
            keys = []
            for h in conn.execute(heads):
                if metadata_ok is not None and not metadata_ok((h.metadata_type, h.metadata)):
                    continue
                keys.append(_key(h))
                if limit is not None and len(keys) >= limit:
                    break
            by_key: dict[tuple[str, str, str], StoredCheckpoint] = {}
            for start in range(0, len(keys), _BATCH):  # bounded IN lists: SQLite caps parameters
                rows = conn.execute(sa.select(K).where(_in(K, keys[start : start + _BATCH]))).all()
                writes = _writes(conn, rows)
                by_key.update((_key(r), _stored(r, writes[_key(r)])) for r in rows)
        return [by_key[k] for k in keys]


# -- helpers -----------------------------------------------------------------------------


def _key(row: Any) -> tuple[str, str, str]:
    return (row.thread_id, row.checkpoint_ns, row.checkpoint_id)


def _in(table: sa.Table, keys: Sequence[tuple[str, str, str]]) -> Any:
    cols = (table.c.thread_id, table.c.checkpoint_ns, table.c.checkpoint_id)
    return sa.tuple_(*cols).in_(keys)


def _stored(row: Any, writes: list[StoredWrite]) -> StoredCheckpoint:
    return StoredCheckpoint(
        *_key(row),
        parent_id=row.parent_id,
        checkpoint=(row.type, row.checkpoint),
        metadata=(row.metadata_type, row.metadata),
        writes=writes,
    )


def _writes(conn: Connection, rows: Sequence[Any]) -> dict[tuple[str, str, str], list]:
    """Each checkpoint's pending writes, in LangGraph's replay order (``writes_sort_key``:
    task path, task id, index)."""
    found: dict[tuple[str, str, str], list[StoredWrite]] = {_key(r): [] for r in rows}
    if not rows:
        return found
    query = sa.select(W).where(_in(W, list(found))).order_by(W.c.task_path, W.c.task_id, W.c.idx)
    for w in conn.execute(query):
        found[_key(w)].append(
            StoredWrite(w.task_id, w.channel, (w.type, w.value), w.task_path, w.idx)
        )
    return found


def _sync_conversation(conn: Connection, mirror: Mirror) -> None:
    """Make conversation ``mirror.name`` hold exactly ``mirror.messages``."""
    now = datetime.now(UTC)
    cid = conn.scalar(sa.select(C.c.id).where(C.c.name == mirror.name))
    if cid is None:
        values = dict(name=mirror.name, memory="buffer", created_at=now, updated_at=now)
        cid = conn.execute(C.insert().values(**values)).inserted_primary_key[0]
    stored = conn.execute(
        sa.select(M.c.id, M.c.role, M.c.content, M.c.reasoning)
        .where(M.c.conversation_id == cid)
        .order_by(M.c.id)
    ).all()
    same = 0
    for row, msg in zip(stored, mirror.messages, strict=False):
        if (row.role, row.content, row.reasoning or "") != (msg.role, msg.content, msg.reasoning):
            break
        same += 1
    if same == len(stored) == len(mirror.messages):
        return
    if same < len(stored):
        conn.execute(M.delete().where(M.c.conversation_id == cid, M.c.id >= stored[same].id))
        # a summary that covered a dropped entry no longer describes the conversation
        conn.execute(
            C.update()
            .where(C.c.id == cid, C.c.summary_upto >= stored[same].id)
            .values(summary=None, summary_upto=None)
        )
    new = [
        dict(
            conversation_id=cid,
            role=m.role,
            content=m.content,
            reasoning=m.reasoning or None,  # thinking beside the answer, never in it
            status="complete",
            created_at=now,
        )
        for m in mirror.messages[same:]
    ]
    if new:
        conn.execute(M.insert(), new)
    conn.execute(C.update().where(C.c.id == cid).values(updated_at=now))
