"""A conversation's items: OpenAI's Conversations/Responses item dicts on the store's rows.

One conversation is one ordered list of rows in ``messages``. A row written by
``Chat``, the page or a LangGraph thread is a plain chat message (role, text);
a row written through OpenAI's APIs keeps its whole item as JSON beside the text
the transcript shows (``row_values``), so a function call, its output, a
reasoning item or an MCP call comes back exactly as it was stored
(``to_item``), and ``llmkit sessions show`` still reads the conversation.

``to_messages`` turns items into what a model is sent (the Responses API's
``conversation=``): calls join the assistant turn before them, outputs answer
them by call id, a reasoning item gives its thinking to the next assistant turn,
and bookkeeping items (listed tools, approval requests and answers) are no
context. Pure functions over plain values: no I/O, no wire models.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

from llmkit.core.types import Message, Role, ToolCall

Item = dict[str, Any]

# Id prefixes by kind, as OpenAI's own ids read.
PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
}
# Kinds that are no model context (``Chat`` skips their rows too).
NOT_CONTEXT = frozenset(
    {"reasoning", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response"}
)
_ROLES: dict[str, Role] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
}


def new_id(kind: str) -> str:
    return f"{PREFIX.get(kind, 'item')}_{uuid.uuid4().hex}"


def row_id(row_pk: int) -> str:
    """The id of a plain row that has none of its own (written before ids, or by Chat)."""
    return f"msg_{row_pk}"


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the texts of its parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _reasoning_text(item: Item) -> str:
    parts = item.get("content") or item.get("summary") or []
    return text_of(parts)


def _mcp_result(item: Item) -> str:
    if item.get("error"):
        err = item["error"]
        return "Error: " + (err if isinstance(err, str) else json.dumps(err, ensure_ascii=False))
    out = item.get("output")
    return out if isinstance(out, str) else ""


def _mcp_call(item: Item) -> str:
    return f"{item.get('server_label')}.{item.get('name')}({item.get('arguments')})"


def is_context(item: Item | None) -> bool:
    """Whether a row's item is model context (a plain row, item None, always is)."""
    return item is None or (item.get("type") in PREFIX and item["type"] not in NOT_CONTEXT)


def row_values(item: Item) -> dict[str, Any]:
    """The ``messages`` row for ``item`` (which has its ``id``): the role and text a
    transcript shows, its thinking, and the item itself."""
    kind = item.get("type", "message")
    role: Role = "assistant"
    reasoning = ""
    status = "complete"
    if kind == "message":
        role = _ROLES.get(item.get("role", "user"), "user")
        text = text_of(item.get("content"))
        status = "interrupted" if item.get("status") == "incomplete" else "complete"
    elif kind == "function_call":
        text = f"{item.get('name')}({item.get('arguments')})"
    elif kind == "function_call_output":
        role, text = "tool", text_of(item.get("output"))
    elif kind == "reasoning":
        text, reasoning = "", _reasoning_text(item)
    elif kind == "mcp_call":
        text = f"{_mcp_call(item)} -> {_mcp_result(item)}"
    elif kind == "mcp_list_tools":
        names = [t.get("name") for t in item.get("tools") or [] if isinstance(t, dict)]
        text = f"{item.get('server_label')}: tools {', '.join(map(str, names))}"
    elif kind == "mcp_approval_request":
        text = f"approval asked: {_mcp_call(item)}"
    elif kind == "mcp_approval_response":
        role, text = "user", "approved" if item.get("approve") else "denied"
    else:
        text = str(kind)
    return dict(
        role=role,
        content=text,
        reasoning=reasoning or None,
        status=status,
        item_id=item["id"],
        item_json=json.dumps(item, ensure_ascii=False),
    )


def to_item(
    pk: int, item_id: str | None, item_json: str | None, role: str, content: str, interrupted: bool
) -> Item:
    """A stored row as an item: its own when it has one, else a message item."""
    if item_json is not None:
        return json.loads(item_json)
    status = "incomplete" if interrupted else "completed"
    if role == "assistant":
        part: Item = {"type": "output_text", "text": content, "annotations": [], "logprobs": []}
    else:
        part = {"type": "input_text", "text": content}
    return {
        "id": item_id or row_id(pk),
        "type": "message",
        "role": role,
        "status": status,
        "content": [part],
    }


def add_call(messages: list[Message], call: ToolCall, thought: str) -> str:
    """Put ``call`` in ``messages``: on the assistant turn just before it (one turn
    that makes several calls), or on a new one that carries ``thought`` (a
    reasoning item's, read before it). The thought left for the next turn."""
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant" and not thought:
        messages[-1] = replace(last, tool_calls=(*last.tool_calls, call))
        return thought
    messages.append(Message("assistant", "", (call,), reasoning=thought))
    return ""


def to_messages(items: list[Item]) -> list[Message]:
    """``items`` (oldest first) as the messages a model is sent."""
    out: list[Message] = []
    thought = ""  # a reasoning item's, for the next assistant turn

    def call(tool_call: ToolCall) -> None:
        nonlocal thought
        thought = add_call(out, tool_call, thought)

    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(item.get("role", "user"), "user")
            text = text_of(item.get("content"))
            if role == "assistant":
                out.append(Message("assistant", text, reasoning=thought))
                thought = ""
            elif role == "tool":
                out.append(Message("user", text))  # a tool message without its call
            else:
                out.append(Message(role, text))
        elif kind == "reasoning":
            thought += _reasoning_text(item)
        elif kind == "function_call":
            call(ToolCall(item["call_id"], item["name"], item["arguments"]))
        elif kind == "function_call_output":
            out.append(Message("tool", text_of(item.get("output")), tool_call_id=item["call_id"]))
        elif kind == "mcp_call":
            call(ToolCall(item["id"], item["name"], item.get("arguments") or "{}"))
            out.append(Message("tool", _mcp_result(item), tool_call_id=item["id"]))
    return out
