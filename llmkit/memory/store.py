"""The conversation store: named conversations in SQL, their settings, summary and
transcripts; ``Store`` is what callers open.

SQLite by default (one file in the data directory), any SQLAlchemy URL otherwise
(PostgreSQL works the same). SQLAlchemy Core, not the ORM: rows never leave
``memory/``; callers get the frozen ``Conversation`` and ``Entry`` values of
``records.py``. A conversation's messages are ``message_store.py``'s part of
``Store``, its items by ``conv_...`` id ``item_store.py``'s.

Nothing is lost: every call is one transaction, committed before it returns,
and rolled back whole when the database fails (the failure surfaces as
``StoreError``). On SQLite the journal is a write-ahead log (a process killed
mid-write loses at most its uncommitted transaction) and writers take the write
lock at ``BEGIN`` and wait for it, so two terminals on one conversation queue up
instead of failing or interleaving half-writes (``database.py`` opens the
engine so). The export document and the Markdown transcript are built by
``transcript.py``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmkit.errors import ConversationExistsError, ConversationNotFoundError, StoreError
from llmkit.memory import images as stored_images
from llmkit.memory import transcript
from llmkit.memory.database import open_engine
from llmkit.memory.item_store import ItemStore, insert_items, new_public_id
from llmkit.memory.message_store import MessageStore
from llmkit.memory.migrations import conversations as C
from llmkit.memory.migrations import messages as M
from llmkit.memory.migrations import migrate
from llmkit.memory.records import Conversation, Entry, check_name, conversation_from_row
from llmkit.memory.strategies import parse_strategy

_UNSET: Any = object()


class Store(MessageStore, ItemStore):
    """Conversations by name. Thread-safe; safe across processes on one machine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)
        with self._write() as conn:
            migrate(conn)

    # -- plumbing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as e:
            where = self._engine.url.render_as_string(hide_password=True)
            if "full" in str(e.orig).lower() or "no space" in str(e.orig).lower():
                raise StoreError(
                    f"The disk holding the conversation store ({where}) is full: nothing of "
                    "this change was written, everything before it is kept. Free some space "
                    "and send again."
                ) from e
            raise StoreError(
                f"The conversation store ({where}) failed, nothing was changed: {e.orig}"
            ) from e

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._translate(), self._engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translate(), self._engine.connect() as conn:
            conn.execution_options(llmkit_read=True)
            with conn.begin():
                yield conn

    def _id(self, conn: Connection, name: str) -> int:
        cid = conn.scalar(sa.select(C.c.id).where(C.c.name == name))
        if cid is None:
            raise ConversationNotFoundError(name)
        return cid

    def _conversations(self, conn: Connection, *where: Any) -> list[Conversation]:
        turns = (
            sa.select(sa.func.count())
            .where(M.c.conversation_id == C.c.id, M.c.role == "user")
            .scalar_subquery()
        )
        query = sa.select(C, turns.label("turns")).where(*where)
        rows = conn.execute(query.order_by(C.c.updated_at.desc(), C.c.id.desc()))
        return [conversation_from_row(r) for r in rows]

    # -- conversations ----------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        model: str | None = None,
        url: str | None = None,
        system: str | None = None,
        memory: str = "buffer",
        metadata: dict[str, str] | None = None,
        initial: list[dict[str, Any]] | None = None,
        conv_id: str | None = None,
    ) -> Conversation:
        """A new conversation; ``metadata``, ``initial`` items (``items.py``, each with
        its id) and its ``conv_id`` (default: a new one) as OpenAI's Conversations API
        gives them, in the same transaction."""
        check_name(name)
        memory = str(parse_strategy(memory))
        with self._write() as conn:
            if conn.scalar(sa.select(C.c.id).where(C.c.name == name)) is not None:
                raise ConversationExistsError(name)
            now = datetime.now(UTC)
            values = dict(model=model, url=url, system=system, memory=memory)
            values["public_id"] = conv_id or new_public_id()
            values["metadata_json"] = json.dumps(metadata) if metadata else None
            try:
                cid = conn.execute(
                    C.insert().values(name=name, created_at=now, updated_at=now, **values)
                ).inserted_primary_key[0]
            except sa.exc.IntegrityError as e:  # created by another process since the check
                raise ConversationExistsError(name) from e
            insert_items(conn, cid, initial or [], now)
            return self._conversations(conn, C.c.name == name)[0]

    def get(self, name: str) -> Conversation:
        with self._read() as conn:
            found = self._conversations(conn, C.c.name == name)
        if not found:
            raise ConversationNotFoundError(name)
        return found[0]

    def get_or_create(self, name: str, **kwargs: Any) -> Conversation:
        """The conversation ``name``; created with ``kwargs`` when there is none."""
        try:
            return self.get(name)
        except ConversationNotFoundError:
            pass
        try:
            return self.create(name, **kwargs)
        except ConversationExistsError:  # another process created it in between
            return self.get(name)

    def update(
        self,
        name: str,
        *,
        model: str | None = _UNSET,
        url: str | None = _UNSET,
        system: str | None = _UNSET,
        memory: str = _UNSET,
        temperature: float | None = _UNSET,
        max_tokens: int | None = _UNSET,
    ) -> Conversation:
        """Change only the fields given (None clears one); doesn't count as use."""
        given = dict(
            model=model, url=url, system=system, temperature=temperature, max_tokens=max_tokens
        )
        values = {k: v for k, v in given.items() if v is not _UNSET}
        if memory is not _UNSET:
            values["memory"] = str(parse_strategy(memory))
        with self._write() as conn:
            cid = self._id(conn, name)
            if values:
                conn.execute(C.update().where(C.c.id == cid).values(**values))
            return self._conversations(conn, C.c.id == cid)[0]

    def list(self) -> list[Conversation]:
        """All conversations, the most recently used first."""
        with self._read() as conn:
            return self._conversations(conn)

    def last(self) -> Conversation | None:
        """The most recently used conversation, if any."""
        newest = sa.select(C.c.id).order_by(C.c.updated_at.desc(), C.c.id.desc()).limit(1)
        with self._read() as conn:
            found = self._conversations(conn, C.c.id == newest.scalar_subquery())
        return found[0] if found else None

    def rename(self, old: str, new: str) -> Conversation:
        check_name(new)
        with self._write() as conn:
            cid = self._id(conn, old)
            if old != new and conn.scalar(sa.select(C.c.id).where(C.c.name == new)):
                raise ConversationExistsError(new)
            conn.execute(C.update().where(C.c.id == cid).values(name=new))
            return self._conversations(conn, C.c.id == cid)[0]

    def delete(self, name: str) -> None:
        """Remove the conversation and its messages."""
        with self._write() as conn:
            # messages go by ON DELETE CASCADE, and explicitly for backends without it
            cid = self._id(conn, name)
            stored_images.unlink(conn, sa.select(M.c.id).where(M.c.conversation_id == cid))
            conn.execute(M.delete().where(M.c.conversation_id == cid))
            conn.execute(C.delete().where(C.c.id == cid))

    def set_summary(self, name: str, summary: str | None, upto_id: int | None) -> None:
        """Store the running summary, covering the entries up to ``upto_id``."""
        with self._write() as conn:
            cid = self._id(conn, name)
            values = dict(summary=summary, summary_upto=upto_id)
            conn.execute(C.update().where(C.c.id == cid).values(**values))

    # -- transcripts ------------------------------------------------------------------

    def _transcript(self, name: str) -> tuple[Conversation, list[Entry]]:
        with self._read() as conn:  # one snapshot: the messages match the header
            found = self._conversations(conn, C.c.name == name)
            if not found:
                raise ConversationNotFoundError(name)
            return found[0], self._entries(conn, self._id(conn, name))

    def export(self, name: str) -> dict[str, Any]:
        """The conversation as a JSON-able document (see ``transcript.py``)."""
        return transcript.to_dict(*self._transcript(name))

    def to_markdown(self, name: str) -> str:
        return transcript.to_markdown(*self._transcript(name))

    def import_(self, data: dict[str, Any], *, name: str | None = None) -> Conversation:
        """Store an ``export`` document as a new conversation (named ``name`` if given)."""
        doc = transcript.from_dict(data, name=name)
        check_name(doc.name)
        with self._write() as conn:
            if conn.scalar(sa.select(C.c.id).where(C.c.name == doc.name)) is not None:
                raise ConversationExistsError(doc.name)
            keys = "name model url system memory summary created_at updated_at".split()
            values = {k: getattr(doc, k) for k in keys}
            values["public_id"] = new_public_id()
            cid = conn.execute(C.insert().values(**values)).inserted_primary_key[0]
            rows = [
                dict(
                    conversation_id=cid,
                    role=m.role,
                    content=m.content,
                    created_at=m.created_at,
                    status="interrupted" if m.interrupted else "complete",
                    reasoning=m.reasoning or None,
                )
                for m in doc.messages
            ]
            for row, m in zip(rows, doc.messages, strict=True):
                # one by one where a turn has images: each needs its own new id
                if m.images:
                    new_id = conn.execute(M.insert().values(**row)).inserted_primary_key[0]
                    stored_images.save(conn, new_id, m.images)
                else:
                    conn.execute(M.insert().values(**row))
            if doc.summary_covers:
                ids = conn.scalars(
                    sa.select(M.c.id).where(M.c.conversation_id == cid).order_by(M.c.id)
                ).all()
                upto = ids[doc.summary_covers - 1]
                conn.execute(C.update().where(C.c.id == cid).values(summary_upto=upto))
            return self._conversations(conn, C.c.id == cid)[0]

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
