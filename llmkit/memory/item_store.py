"""The store's side of OpenAI's Conversations API: conversations by ``conv_...`` id,
their metadata, and their rows as items (``items.py``).

These are the same rows ``Chat``, the page, ``llmkit sessions`` and stored
responses use: a conversation has a name (what llmkit's own tools show) and an
id (what OpenAI's API shows). One made through ``/v1/conversations`` is named
after its id; one made by ``Chat`` keeps its name and gets an id when created.
Wherever an id is asked for, the name is accepted too (the id wins a clash).
``ItemStore`` is a part of ``Store`` (it uses its connections), kept apart so
neither module outgrows one sitting.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmkit.errors import ConversationIdNotFoundError, ConversationItemNotFoundError
from llmkit.memory import items
from llmkit.memory.migrations import conversations as C
from llmkit.memory.migrations import messages as M

if TYPE_CHECKING:
    from llmkit.memory.records import Conversation

_ROW_ID = re.compile(r"conv_(\d+)")
_MSG_ROW = re.compile(r"msg_(\d+)")


def new_public_id() -> str:
    return f"conv_{uuid.uuid4().hex}"


def public_id(row_pk: int, stored: str | None) -> str:
    """A conversation's ``conv_...`` id; a row written without one (by a path that
    does not set it) is named after its primary key."""
    return stored or f"conv_{row_pk}"


def insert_items(conn: Connection, cid: int, given: list[items.Item], now: datetime) -> None:
    """Append ``given`` items (each with its ``id``) to conversation ``cid``, in order."""
    if given:
        rows = [dict(conversation_id=cid, created_at=now, **items.row_values(it)) for it in given]
        for row in rows:  # one by one: the rows' ids keep the items' order on every backend
            conn.execute(M.insert().values(**row))
        conn.execute(C.update().where(C.c.id == cid).values(updated_at=now))


def with_ids(given: list[items.Item]) -> list[items.Item]:
    """``given`` with an ``id`` on each item (a given one is kept)."""
    out = []
    for it in given:
        kind = it.get("type", "message")
        rest = {k: v for k, v in it.items() if k not in ("id", "type")}
        out.append({"id": it.get("id") or items.new_id(kind), "type": kind, **rest})
    return out


class ItemStore:
    """Conversations by id and their items; mixed into ``Store``."""

    if TYPE_CHECKING:  # provided by Store
        from contextlib import AbstractContextManager

        def _write(self) -> AbstractContextManager[Connection]: ...
        def _read(self) -> AbstractContextManager[Connection]: ...
        def _conversations(self, conn: Connection, *where: Any) -> list[Conversation]: ...

    def _find(self, conn: Connection, ref: str, param: str | None = None) -> int:
        cid = conn.scalar(sa.select(C.c.id).where(C.c.public_id == ref))
        if cid is None and (m := _ROW_ID.fullmatch(ref)):
            row = sa.select(C.c.id).where(C.c.id == int(m[1]), C.c.public_id.is_(None))
            cid = conn.scalar(row)
        if cid is None:
            cid = conn.scalar(sa.select(C.c.id).where(C.c.name == ref))
        if cid is None:
            raise ConversationIdNotFoundError(ref, param=param)
        return cid

    def _item_row(self, conn: Connection, cid: int, ref: str, item_id: str) -> Any:
        match = M.c.item_id == item_id
        if m := _MSG_ROW.fullmatch(item_id):
            match = sa.or_(match, sa.and_(M.c.item_id.is_(None), M.c.id == int(m[1])))
        query = sa.select(M).where(M.c.conversation_id == cid, match).order_by(M.c.id.desc())
        row = conn.execute(query.limit(1)).first()
        if row is None:
            raise ConversationItemNotFoundError(ref, item_id)
        return row

    # -- conversations -------------------------------------------------------------------

    def conversation(self, ref: str, *, param: str | None = None) -> Conversation:
        """The conversation with id (or name) ``ref``."""
        with self._read() as conn:
            return self._conversations(conn, C.c.id == self._find(conn, ref, param))[0]

    def set_metadata(self, ref: str, metadata: dict[str, str]) -> Conversation:
        """Replace the conversation's metadata (OpenAI's update replaces it whole)."""
        with self._write() as conn:
            cid = self._find(conn, ref)
            value = json.dumps(metadata) if metadata else None
            conn.execute(C.update().where(C.c.id == cid).values(metadata_json=value))
            return self._conversations(conn, C.c.id == cid)[0]

    def delete_conversation(self, ref: str) -> str:
        """Remove the conversation, its items and its stored responses; its id."""
        with self._write() as conn:
            cid = self._find(conn, ref)
            found = self._conversations(conn, C.c.id == cid)[0]
            conn.execute(M.delete().where(M.c.conversation_id == cid))
            conn.execute(C.delete().where(C.c.id == cid))  # responses go by ON DELETE CASCADE
        return found.id

    # -- items ---------------------------------------------------------------------------

    def append_items(
        self, ref: str, given: list[items.Item], *, param: str | None = None
    ) -> list[items.Item]:
        """Append ``given`` (Responses items, ``items.py``) in one transaction; the
        items as stored, each with its id."""
        stored = with_ids(given)
        with self._write() as conn:
            insert_items(conn, self._find(conn, ref, param), stored, datetime.now(UTC))
        return stored

    def all_items(
        self, ref: str, *, param: str | None = None
    ) -> tuple[Conversation, list[items.Item]]:
        """The conversation and all its items, oldest first, read at one moment."""
        with self._read() as conn:
            cid = self._find(conn, ref, param)
            conv = self._conversations(conn, C.c.id == cid)[0]
            rows = conn.execute(sa.select(M).where(M.c.conversation_id == cid).order_by(M.c.id))
            return conv, [_item(r) for r in rows]

    def list_items(
        self, ref: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[items.Item], bool]:
        """A page of items (``order``: asc or desc) after item ``after``; and whether
        more follow."""
        with self._read() as conn:
            cid = self._find(conn, ref)
            query = sa.select(M).where(M.c.conversation_id == cid)
            if after is not None:
                start = self._item_row(conn, cid, ref, after).id
                query = query.where(M.c.id > start if order == "asc" else M.c.id < start)
            by = M.c.id.asc() if order == "asc" else M.c.id.desc()
            rows = conn.execute(query.order_by(by).limit(limit + 1)).all()
        return [_item(r) for r in rows[:limit]], len(rows) > limit

    def get_item(self, ref: str, item_id: str) -> items.Item:
        with self._read() as conn:
            return _item(self._item_row(conn, self._find(conn, ref), ref, item_id))

    def delete_item(self, ref: str, item_id: str) -> Conversation:
        """Remove one item; the conversation after it. A summary that covered it no
        longer describes the conversation, so it goes too."""
        with self._write() as conn:
            cid = self._find(conn, ref)
            pk = self._item_row(conn, cid, ref, item_id).id
            conn.execute(M.delete().where(M.c.id == pk))
            conn.execute(
                C.update()
                .where(C.c.id == cid, C.c.summary_upto >= pk)
                .values(summary=None, summary_upto=None)
            )
            return self._conversations(conn, C.c.id == cid)[0]


def _item(r: Any) -> items.Item:
    return items.to_item(r.id, r.item_id, r.item_json, r.role, r.content, r.status == "interrupted")
