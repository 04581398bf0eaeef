"""The store's records: the frozen ``Conversation`` and ``Entry`` values callers get,
and how a database row becomes one.

``Store`` (``store.py``, ``message_store.py``, ``item_store.py``) reads rows and
hands out only these, so rows never leave ``memory/``; ``check_name`` is the one
rule for a conversation's name, shared by the store and LangGraph's checkpointer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from llmkit.core.types import Image, Message, Role, ToolCall
from llmkit.errors import InvalidRequestError
from llmkit.memory import items
from llmkit.memory.item_store import public_id


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
    # OpenAI's id of this conversation (``conv_...``) and its metadata (``items.py``)
    id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

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
    # A user turn's images, in order (stored once each: ``memory/images.py``).
    images: tuple[Image, ...] = ()
    # Written through OpenAI's APIs: the item itself (a function call, an MCP call...);
    # ``content`` is then its text as a transcript shows it. None: a plain chat message.
    item: dict[str, Any] | None = None
    item_id: str = ""  # the item's id (``msg_...``)

    # An assistant turn's tool calls, each {"id", "name", "arguments", "server"}, and
    # the MCP servers the turn could use; a ``tool`` message's call id. A tool message
    # whose call failed (or was denied) is ``tool_error``.
    tool_calls: tuple[dict[str, str], ...] = ()
    tool_servers: tuple[str, ...] = ()
    tool_call_id: str | None = None
    tool_error: bool = False

    @property
    def in_context(self) -> bool:
        """Whether the model is sent this row (listed tools, approvals are bookkeeping)."""
        return items.is_context(self.item)

    def _calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in self.tool_calls)

    @property
    def message(self) -> Message:
        """The turn as history sends it: the answer only. Earlier thinking is not
        sent back by default (``with_reasoning`` has it, for a template that wants it)."""
        return Message(
            self.role,
            self.content,
            tool_calls=self._calls(),
            tool_call_id=self.tool_call_id,
            images=self.images,
        )

    @property
    def with_reasoning(self) -> Message:
        return replace(self.message, reasoning=self.reasoning)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip() or len(name) > 200:
        raise InvalidRequestError(
            f"Invalid conversation name {name!r}: use 1 to 200 characters, "
            "not starting or ending with a space.",
            param="name",
        )
    return name


def entry_from_row(r: Any) -> Entry:
    """The ``Entry`` of a ``messages`` row."""
    item = json.loads(r.item_json) if r.item_json is not None else None
    calls = json.loads(r.tool_calls) if r.tool_calls else {}
    return Entry(
        r.id,
        r.role,
        r.content,
        r.status == "interrupted",
        r.created_at,
        r.reasoning or "",
        item=item,
        item_id=r.item_id or items.row_id(r.id),
        tool_calls=tuple(calls.get("calls") or ()),
        tool_servers=tuple(calls.get("servers") or ()),
        tool_call_id=r.tool_call_id,
        tool_error=r.status == "error",
    )


_PLAIN = frozenset(f.name for f in fields(Conversation)) - {"id", "metadata"}


def conversation_from_row(r: Any) -> Conversation:
    """The ``Conversation`` of a ``conversations`` row with its ``turns`` counted."""
    plain = {name: getattr(r, name) for name in _PLAIN}
    meta = json.loads(r.metadata_json) if r.metadata_json else {}
    return Conversation(**plain, id=public_id(r.id, r.public_id), metadata=meta)
