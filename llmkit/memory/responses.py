"""Stored answers of OpenAI's Responses API, kept in the conversation store.

A response is one turn. It records its parent (``previous_response_id``), so a
chain of responses is a conversation and the history of a response is its
ancestor chain: two responses may continue the same parent (branches), each
seeing only its own ancestors. The first turn of a chain creates a conversation
(memory ``tokens``, named after its first words, listed by ``llmkit sessions``);
later turns join their parent's conversation and append their text to its
transcript, so ``llmkit sessions show`` reads it like any other chat.

Retention is bounded: on opening and after each stored turn the oldest turns past
``max_count``, and those older than ``max_age`` seconds, are evicted, with their
transcript rows; a conversation left without turns goes with its last one.
Everything here speaks core types and plain JSON values; the wire format of a
response is the API layer's business, stored here as given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmkit.core.types import Message, ToolCall
from llmkit.errors import ResponseNotFoundError
from llmkit.memory.images import image_from_json, image_to_json
from llmkit.memory.item_store import insert_items, new_public_id
from llmkit.memory.migrations import conversations as C
from llmkit.memory.migrations import messages as M
from llmkit.memory.migrations import responses as R
from llmkit.memory.store import Store

MEMORY = "tokens"  # a chain outgrowing the context keeps its newest turns


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoredResponse:
    id: str
    conversation: str  # the conversation's name
    previous_id: str | None
    created_at: datetime
    input_items: list[dict[str, Any]]  # the turn's own input, as items with ids
    response: dict[str, Any]  # the Response object, as it was answered
    messages: list[Message]  # what the turn added to the history: input, then output


def message_to_json(m: Message) -> dict[str, Any]:
    return {
        "role": m.role,
        "content": m.content,
        "tool_calls": [[c.id, c.name, c.arguments_json] for c in m.tool_calls],
        "tool_call_id": m.tool_call_id,
        # an assistant turn's thinking, for a chain's later turns (rows before it have none)
        "reasoning": m.reasoning,
        # a user turn's images, inline: a chain's later turns send them again
        **({"images": [image_to_json(i) for i in m.images]} if m.images else {}),
    }


def message_from_json(d: dict[str, Any]) -> Message:
    calls = tuple(ToolCall(*c) for c in d.get("tool_calls") or ())
    return Message(
        d["role"],
        d["content"],
        tool_calls=calls,
        tool_call_id=d.get("tool_call_id"),
        reasoning=d.get("reasoning") or "",
        images=tuple(image_from_json(i) for i in d.get("images") or ()),
    )


def conversation_name(response_id: str, messages: list[Message]) -> str:
    """A readable, shell-friendly name: the first words of the first user message
    and a piece of the response id ("what-is-the-capital-of-france-3f9a0c1e")."""
    first = next((m.content for m in messages if m.role == "user" and m.content.strip()), "")
    words = re.findall(r"\w+", first.lower())[:6]
    slug = "-".join(words)[:48].strip("-") or "response"
    return f"{slug}-{response_id.removeprefix('resp_')[-8:]}"


def _transcript(m: Message) -> tuple[str, str] | None:
    """A turn's message as the conversation's transcript shows it; system text is
    the request's business (``instructions``), not the conversation's."""
    if m.role == "system":
        return None
    calls = "\n".join(f"{c.name}({c.arguments_json})" for c in m.tool_calls)
    return m.role, "\n".join(x for x in (m.content, calls) if x)


class ResponseStore(Store):
    """The conversation store, plus the Responses API's turns and their retention."""

    def __init__(
        self, url: str, *, max_count: int | None = None, max_age: float | None = None
    ) -> None:
        super().__init__(url)
        self.max_count = max_count
        self.max_age = max_age
        self.evict()  # a server restarted with tighter bounds applies them at once

    def save(
        self,
        response_id: str,
        *,
        previous_id: str | None,
        model: str,
        input_items: list[dict[str, Any]],
        response: dict[str, Any],
        messages: list[Message],
        conversation: str | None = None,
    ) -> str:
        """Store one turn (one transaction), then evict what retention says; the
        name of its conversation. ``conversation``: the id of an OpenAI conversation
        the turn belongs to: its input and output items are appended to it there
        (and stay when the turn is evicted) instead of a transcript."""
        now = _now()
        with self._write() as conn:
            if conversation is not None:
                cid = self._find(conn, conversation, "conversation")
                insert_items(conn, cid, [*input_items, *response["output"]], now)
                self._record(conn, response_id, cid, None, now, input_items, response, messages)
                name = conn.scalar(sa.select(C.c.name).where(C.c.id == cid))
                conn.execute(C.update().where(C.c.id == cid).values(model=model))
            else:
                name = self._save_chain(
                    conn, response_id, previous_id, model, input_items, response, messages, now
                )
        self.evict()
        return name

    def _record(
        self,
        conn: Connection,
        response_id: str,
        cid: int,
        previous_id: str | None,
        now: datetime,
        input_items: list[dict[str, Any]],
        response: dict[str, Any],
        messages: list[Message],
        ids: tuple[int | None, int | None] = (None, None),
    ) -> None:
        conn.execute(
            R.insert().values(
                id=response_id,
                conversation_id=cid,
                previous_id=previous_id,
                created_at=now,
                input_json=json.dumps(input_items, ensure_ascii=False),
                response_json=json.dumps(response, ensure_ascii=False),
                messages_json=json.dumps([message_to_json(m) for m in messages]),
                first_message_id=ids[0],
                last_message_id=ids[1],
            )
        )

    def _save_chain(
        self,
        conn: Connection,
        response_id: str,
        previous_id: str | None,
        model: str,
        input_items: list[dict[str, Any]],
        response: dict[str, Any],
        messages: list[Message],
        now: datetime,
    ) -> str:
        cid = None
        if previous_id is not None:
            cid = conn.scalar(sa.select(R.c.conversation_id).where(R.c.id == previous_id))
        if cid is None:  # a new chain (or its parent went since it was read)
            name = conversation_name(response_id, messages)
            if conn.scalar(sa.select(C.c.id).where(C.c.name == name)) is not None:
                name = f"{name}-{response_id}"
            values = dict(name=name, model=model, memory=MEMORY, public_id=new_public_id())
            cid = conn.execute(
                C.insert().values(created_at=now, updated_at=now, **values)
            ).inserted_primary_key[0]
        ids = []
        for m in messages:
            shown = _transcript(m)
            if shown is None:
                continue
            row = dict(conversation_id=cid, role=shown[0], content=shown[1], created_at=now)
            ids.append(conn.execute(M.insert().values(**row)).inserted_primary_key[0])
        span = (min(ids, default=None), max(ids, default=None))
        self._record(
            conn, response_id, cid, previous_id, now, input_items, response, messages, span
        )
        conn.execute(C.update().where(C.c.id == cid).values(updated_at=now, model=model))
        return conn.scalar(sa.select(C.c.name).where(C.c.id == cid))

    def response(self, response_id: str, *, param: str | None = None) -> StoredResponse:
        with self._read() as conn:
            found = self._load(conn, response_id)
        if found is None:
            raise ResponseNotFoundError(response_id, param=param)
        return found

    def chain(self, response_id: str, *, param: str | None = None) -> list[StoredResponse]:
        """The response and its ancestors still stored, oldest first."""
        out: list[StoredResponse] = []
        with self._read() as conn:
            rid: str | None = response_id
            while rid is not None and len(out) < 100_000:
                turn = self._load(conn, rid)
                if turn is None:
                    break
                out.append(turn)
                rid = turn.previous_id
        if not out:
            raise ResponseNotFoundError(response_id, param=param)
        return out[::-1]

    def remove(self, response_id: str) -> None:
        """Delete one turn and its transcript rows (its children keep theirs)."""
        with self._write() as conn:
            if not self._remove(conn, [response_id]):
                raise ResponseNotFoundError(response_id)

    def evict(self) -> int:
        """Drop the turns past ``max_count`` (oldest first) and older than
        ``max_age``; how many went."""
        if self.max_count is None and self.max_age is None:
            return 0
        with self._write() as conn:
            doomed: set[str] = set()
            if self.max_age is not None:
                cutoff = _now() - timedelta(seconds=self.max_age)
                doomed |= set(conn.scalars(sa.select(R.c.id).where(R.c.created_at < cutoff)))
            if self.max_count is not None:
                newest_first = sa.select(R.c.id).order_by(R.c.created_at.desc(), R.c.id.desc())
                doomed |= set(conn.scalars(newest_first.offset(self.max_count)))
            return self._remove(conn, sorted(doomed))

    # -- plumbing -----------------------------------------------------------------------

    def _load(self, conn: Connection, response_id: str) -> StoredResponse | None:
        query = sa.select(R, C.c.name).join(C, C.c.id == R.c.conversation_id)
        row = conn.execute(query.where(R.c.id == response_id)).first()
        if row is None:
            return None
        return StoredResponse(
            id=row.id,
            conversation=row.name,
            previous_id=row.previous_id,
            created_at=row.created_at,
            input_items=json.loads(row.input_json),
            response=json.loads(row.response_json),
            messages=[message_from_json(d) for d in json.loads(row.messages_json)],
        )

    def _remove(self, conn: Connection, ids: list[str]) -> int:
        if not ids:
            return 0
        rows = conn.execute(
            sa.select(R.c.conversation_id, R.c.first_message_id, R.c.last_message_id).where(
                R.c.id.in_(ids)
            )
        ).all()
        for cid, first, last in rows:
            if first is not None:
                conn.execute(
                    M.delete().where(M.c.conversation_id == cid, M.c.id >= first, M.c.id <= last)
                )
        conn.execute(R.delete().where(R.c.id.in_(ids)))
        # A chain with no turn left goes whole; a conversation that holds items of its
        # own (OpenAI's conversations, a chain continued by ``Chat``) stays.
        for cid in {r[0] for r in rows}:
            turn = sa.select(R.c.id).where(R.c.conversation_id == cid).limit(1)
            kept = sa.select(M.c.id).where(M.c.conversation_id == cid).limit(1)
            if conn.scalar(turn) is None and conn.scalar(kept) is None:
                conn.execute(M.delete().where(M.c.conversation_id == cid))
                conn.execute(C.delete().where(C.c.id == cid))
        return len(rows)
