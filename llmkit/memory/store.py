"""The conversation store: named conversations and their messages, in SQL.

SQLite by default (one file in the data directory), any SQLAlchemy URL otherwise
(PostgreSQL works the same). SQLAlchemy Core, not the ORM: rows never leave this
module; callers get the frozen ``Conversation`` and ``Entry`` values below.

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
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmkit.core.types import Message, Role, ToolCall
from llmkit.errors import (
    ConversationExistsError,
    ConversationNotFoundError,
    InvalidRequestError,
    StoreError,
)
from llmkit.memory import transcript
from llmkit.memory.database import open_engine
from llmkit.memory.migrations import conversations as C
from llmkit.memory.migrations import messages as M
from llmkit.memory.migrations import migrate
from llmkit.memory.strategies import parse_strategy

_UNSET: Any = object()
_ROLES = frozenset(get_args(Role))


@dataclass(frozen=True)
class Conversation:
    name: str
    model: str | None
    url: str | None
    system: str | None
    memory: str
    summary: str | None
    summary_upto: int | None  # id of the newest entry folded into ``summary``
    created_at: datetime
    updated_at: datetime  # last used
    turns: int  # user messages
    temperature: float | None = None  # sampling asked for (None: the server's default)
    max_tokens: int | None = None

    def summarized(self, entries: list[Entry]) -> int:
        """How many of ``entries`` (this conversation's, oldest first) the summary
        covers: the ``summarized`` argument of ``select_messages``/``plan_summary``."""
        if self.summary is None or self.summary_upto is None:
            return 0
        return sum(1 for e in entries if e.id <= self.summary_upto)


@dataclass(frozen=True)
class Entry:
    """One stored message. ``id`` grows with time across the whole store."""

    id: int
    role: Role
    content: str
    interrupted: bool
    created_at: datetime
    # An assistant turn's thinking (a reasoning model's), kept apart from ``content``.
    reasoning: str = ""
    # An assistant turn's tool calls, each {"id", "name", "arguments", "server"}, and
    # the MCP servers the turn could use; a ``tool`` message's call id. A tool message
    # whose call failed (or was denied) is ``tool_error``.
    tool_calls: tuple[dict[str, str], ...] = ()
    tool_servers: tuple[str, ...] = ()
    tool_call_id: str | None = None
    tool_error: bool = False

    def _calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in self.tool_calls)

    @property
    def message(self) -> Message:
        """The turn as history sends it: the answer only. Earlier thinking is not
        sent back by default (``with_reasoning`` has it, for a template that wants it)."""
        return Message(
            self.role, self.content, tool_calls=self._calls(), tool_call_id=self.tool_call_id
        )

    @property
    def with_reasoning(self) -> Message:
        return Message(
            self.role,
            self.content,
            tool_calls=self._calls(),
            tool_call_id=self.tool_call_id,
            reasoning=self.reasoning,
        )


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip() or len(name) > 200:
        raise InvalidRequestError(
            f"Invalid conversation name {name!r}: use 1 to 200 characters, "
            "not starting or ending with a space.",
            param="name",
        )
    return name


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
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

    def _entries(self, conn: Connection, cid: int) -> list[Entry]:
        rows = conn.execute(sa.select(M).where(M.c.conversation_id == cid).order_by(M.c.id))
        return [_entry(r) for r in rows]

    def _conversations(self, conn: Connection, *where: Any) -> list[Conversation]:
        turns = (
            sa.select(sa.func.count())
            .where(M.c.conversation_id == C.c.id, M.c.role == "user")
            .scalar_subquery()
        )
        query = sa.select(C, turns.label("turns")).where(*where)
        rows = conn.execute(query.order_by(C.c.updated_at.desc(), C.c.id.desc()))
        return [Conversation(*(getattr(r, f.name) for f in fields(Conversation))) for r in rows]

    # -- conversations ----------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        model: str | None = None,
        url: str | None = None,
        system: str | None = None,
        memory: str = "buffer",
    ) -> Conversation:
        check_name(name)
        memory = str(parse_strategy(memory))
        with self._write() as conn:
            if conn.scalar(sa.select(C.c.id).where(C.c.name == name)) is not None:
                raise ConversationExistsError(name)
            now = _now()
            values = dict(model=model, url=url, system=system, memory=memory)
            try:
                conn.execute(C.insert().values(name=name, created_at=now, updated_at=now, **values))
            except sa.exc.IntegrityError as e:  # created by another process since the check
                raise ConversationExistsError(name) from e
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
            conn.execute(M.delete().where(M.c.conversation_id == cid))
            conn.execute(C.delete().where(C.c.id == cid))

    def set_summary(self, name: str, summary: str | None, upto_id: int | None) -> None:
        """Store the running summary, covering the entries up to ``upto_id``."""
        with self._write() as conn:
            cid = self._id(conn, name)
            values = dict(summary=summary, summary_upto=upto_id)
            conn.execute(C.update().where(C.c.id == cid).values(**values))

    # -- messages ---------------------------------------------------------------------

    def append(
        self,
        name: str,
        role: Role,
        content: str,
        *,
        interrupted: bool = False,
        reasoning: str = "",
        tool_calls: list[dict[str, str]] | None = None,
        tool_servers: list[str] | None = None,
        tool_call_id: str | None = None,
        tool_error: bool = False,
    ) -> Entry:
        """Store one message now (committed when this returns); marks the conversation
        used. ``reasoning``: an assistant turn's thinking, kept apart from ``content``;
        ``tool_calls`` (with ``tool_servers``), ``tool_call_id``, ``tool_error``: as
        ``Entry`` has them."""
        if role not in _ROLES:
            raise InvalidRequestError(
                f"Unknown role {role!r}: use one of {sorted(_ROLES)}.", param="role"
            )
        now = _now()
        status = "interrupted" if interrupted else "error" if tool_error else "complete"
        calls = {"calls": tool_calls, "servers": tool_servers or []} if tool_calls else None
        with self._write() as conn:
            cid = self._id(conn, name)
            row = dict(conversation_id=cid, role=role, content=content, status=status)
            row["reasoning"] = reasoning or None
            row["tool_calls"] = json.dumps(calls) if calls else None
            row["tool_call_id"] = tool_call_id
            new_id = conn.execute(M.insert().values(created_at=now, **row)).inserted_primary_key[0]
            conn.execute(C.update().where(C.c.id == cid).values(updated_at=now))
        return Entry(
            new_id,
            role,
            content,
            interrupted,
            now,
            reasoning,
            tuple(tool_calls or ()),
            tuple(tool_servers or ()) if tool_calls else (),
            tool_call_id,
            tool_error,
        )

    def entries(self, name: str) -> list[Entry]:
        """The conversation's messages, oldest first."""
        with self._read() as conn:
            return self._entries(conn, self._id(conn, name))

    def delete_entries_from(self, name: str, entry_id: int) -> None:
        """Drop entry ``entry_id`` and every later one (``/retry``, ``/undo``).

        A summary that covered any of them no longer describes the conversation,
        so it is dropped too (the next turn folds the history again).
        """
        with self._write() as conn:
            cid = self._id(conn, name)
            hit = sa.select(M.c.id).where(M.c.conversation_id == cid, M.c.id == entry_id)
            if conn.scalar(hit) is None:
                raise InvalidRequestError(
                    f"Conversation '{name}' has no entry {entry_id}.", param="entry_id"
                )
            conn.execute(M.delete().where(M.c.conversation_id == cid, M.c.id >= entry_id))
            conn.execute(
                C.update()
                .where(C.c.id == cid, C.c.summary_upto >= entry_id)
                .values(summary=None, summary_upto=None)
            )

    def rewrite(
        self,
        name: str,
        entry_id: int,
        content: str,
        *,
        interrupted: bool,
        reasoning: str | None = None,
    ) -> Entry:
        """Replace one message's text in place (a cut reply, continued); marks the
        conversation used. ``reasoning``: its thinking too (None: kept as it is)."""
        now = _now()
        status = "interrupted" if interrupted else "complete"
        values: dict[str, Any] = dict(content=content, status=status)
        if reasoning is not None:
            values["reasoning"] = reasoning or None
        with self._write() as conn:
            cid = self._id(conn, name)
            row = conn.execute(
                M.update()
                .where(M.c.conversation_id == cid, M.c.id == entry_id)
                .values(**values)
                .returning(M)
            ).first()
            if row is None:
                raise InvalidRequestError(
                    f"Conversation '{name}' has no entry {entry_id}.", param="entry_id"
                )
            conn.execute(C.update().where(C.c.id == cid).values(updated_at=now))
        return _entry(row)

    def search(self, text: str) -> list[tuple[str, Entry]]:
        """Messages containing ``text`` (any case), oldest first, with their conversation."""
        if not text:
            raise InvalidRequestError("Search for some text, not an empty string.")
        query = (
            sa.select(C.c.name, M)
            .join(C, C.c.id == M.c.conversation_id)
            .where(M.c.content.icontains(text, autoescape=True))
            .order_by(M.c.id)
        )
        with self._read() as conn:
            return [(r.name, _entry(r)) for r in conn.execute(query)]

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
            if rows:
                conn.execute(M.insert(), rows)
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


def _entry(r: Any) -> Entry:
    calls = json.loads(r.tool_calls) if r.tool_calls else {}
    return Entry(
        r.id,
        r.role,
        r.content,
        r.status == "interrupted",
        r.created_at,
        r.reasoning or "",
        tuple(calls.get("calls") or ()),
        tuple(calls.get("servers") or ()),
        r.tool_call_id,
        r.status == "error",
    )
