"""The store's messages: a conversation's entries appended, read, cut back,
rewritten and searched, with the images of its user turns.

``MessageStore`` is a part of ``Store`` (it uses its connections), kept apart, as
``ItemStore`` is, so neither module outgrows one sitting. The same rows are
OpenAI's items to ``item_store.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmkit.core.types import Image, Role
from llmkit.errors import InvalidRequestError
from llmkit.memory import images as stored_images
from llmkit.memory import items
from llmkit.memory.migrations import conversations as C
from llmkit.memory.migrations import messages as M
from llmkit.memory.records import Entry, entry_from_row

_ROLES = frozenset(get_args(Role))


class MessageStore:
    """A conversation's messages, by the conversation's name; mixed into ``Store``."""

    if TYPE_CHECKING:  # provided by Store
        from contextlib import AbstractContextManager

        def _write(self) -> AbstractContextManager[Connection]: ...
        def _read(self) -> AbstractContextManager[Connection]: ...
        def _id(self, conn: Connection, name: str) -> int: ...

    def _entries(self, conn: Connection, cid: int) -> list[Entry]:
        rows = conn.execute(sa.select(M).where(M.c.conversation_id == cid).order_by(M.c.id))
        entries = [entry_from_row(r) for r in rows]
        pictures = stored_images.load(conn, (e.id for e in entries if e.role == "user"))
        return [replace(e, images=pictures[e.id]) if e.id in pictures else e for e in entries]

    def append(
        self,
        name: str,
        role: Role,
        content: str,
        *,
        interrupted: bool = False,
        reasoning: str = "",
        images: Sequence[Image] = (),
        tool_calls: list[dict[str, str]] | None = None,
        tool_servers: list[str] | None = None,
        tool_call_id: str | None = None,
        tool_error: bool = False,
    ) -> Entry:
        """Store one message now (committed when this returns); marks the conversation
        used. ``reasoning``: an assistant turn's thinking, kept apart from ``content``;
        ``images``: a user turn's, stored once each by their hash; ``tool_calls`` (with
        ``tool_servers``), ``tool_call_id``, ``tool_error``: as ``Entry`` has them."""
        if role not in _ROLES:
            raise InvalidRequestError(
                f"Unknown role {role!r}: use one of {sorted(_ROLES)}.", param="role"
            )
        if images and role != "user":
            raise InvalidRequestError("Only user turns carry images.", param="images")
        now = datetime.now(UTC)
        status = "interrupted" if interrupted else "error" if tool_error else "complete"
        calls = {"calls": tool_calls, "servers": tool_servers or []} if tool_calls else None
        with self._write() as conn:
            cid = self._id(conn, name)
            row = dict(conversation_id=cid, role=role, content=content, status=status)
            row["reasoning"] = reasoning or None
            row["item_id"] = items.new_id("message")
            row["tool_calls"] = json.dumps(calls) if calls else None
            row["tool_call_id"] = tool_call_id
            new_id = conn.execute(M.insert().values(created_at=now, **row)).inserted_primary_key[0]
            stored_images.save(conn, new_id, images)
            conn.execute(C.update().where(C.c.id == cid).values(updated_at=now))
        return Entry(
            new_id,
            role,
            content,
            interrupted,
            now,
            reasoning,
            tuple(images),
            item_id=row["item_id"],
            tool_calls=tuple(tool_calls or ()),
            tool_servers=tuple(tool_servers or ()) if tool_calls else (),
            tool_call_id=tool_call_id,
            tool_error=tool_error,
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
            gone = M.c.conversation_id == cid, M.c.id >= entry_id
            stored_images.unlink(conn, sa.select(M.c.id).where(*gone))
            conn.execute(M.delete().where(*gone))
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
        now = datetime.now(UTC)
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
            pictures = stored_images.load(conn, [entry_id]).get(entry_id, ())
        return replace(entry_from_row(row), images=pictures)  # the text changes; its images stay

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
            return [(r.name, entry_from_row(r)) for r in conn.execute(query)]

    def image(self, sha256: str) -> Image | None:
        """A stored image by its hash (None unless some message carries it)."""
        with self._read() as conn:
            return stored_images.get(conn, sha256)
