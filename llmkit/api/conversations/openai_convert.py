"""Pure translations for OpenAI's Conversations API (``/v1/conversations``).

Requests: the bounds OpenAI documents (16 metadata pairs, keys up to 64
characters, values up to 512; 20 items per create) checked before any work, and
each given item read into the stored item it becomes (messages, function calls
and outputs and reasoning as ``/v1/responses`` reads its input; MCP items by
their own fields). Answers: the conversation object, the deleted object, a page
of items as OpenAI's list. No I/O here: the store keeps, the routes serve.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmkit.api.responses.input_items import MakeId, read_input
from llmkit.api.responses.reasoning import seal
from llmkit.errors import InvalidRequestError
from llmkit.memory import items as it
from llmkit.memory.records import Conversation

MAX_ITEMS = 20  # per create, as OpenAI's
MAX_PAIRS, MAX_KEY, MAX_VALUE = 16, 64, 512  # metadata, as OpenAI's
INCLUDE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)
_READ_BY_RESPONSES = {"message", "function_call", "function_call_output", "reasoning"}


class CreateConversationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any] | None = None
    items: list[Any] | None = Field(default=None, max_length=MAX_ITEMS)


class UpdateConversationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any]


class CreateItemsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Any] = Field(min_length=1, max_length=MAX_ITEMS)


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def check_metadata(meta: dict[str, Any] | None) -> dict[str, str]:
    """``metadata`` within OpenAI's bounds; a 400 naming the first pair over them."""
    meta = meta or {}
    if len(meta) > MAX_PAIRS:
        raise _bad(f"metadata has {len(meta)} pairs; at most {MAX_PAIRS} are allowed.", "metadata")
    for key, value in meta.items():
        if len(key) > MAX_KEY:
            raise _bad(
                f"metadata keys are at most {MAX_KEY} characters; '{key[:20]}...' is longer.",
                f"metadata.{key[:MAX_KEY]}",
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise _bad(
                f"metadata.{key} must be a string of at most {MAX_VALUE} characters.",
                f"metadata.{key}",
            )
    return meta


def check_include(include: list[str]) -> bool:
    """The ``include`` values, checked; whether reasoning items carry ``encrypted_content``
    (the one value that adds something here: nothing else of the kinds is stored)."""
    for i, value in enumerate(include):
        if value not in INCLUDE:
            raise _bad(
                f"include.{i}: {value!r} is not one of {', '.join(sorted(INCLUDE))}.",
                f"include.{i}",
            )
    return "reasoning.encrypted_content" in include


def _string(item: dict[str, Any], key: str, where: str, *, optional: bool = False) -> None:
    value = item.get(key)
    if (value is None and not optional) or (value is not None and not isinstance(value, str)):
        raise _bad(f"{where}.{key} must be a string.", f"{where}.{key}")


def _mcp_item(item: dict[str, Any], kind: str, where: str, make_id: MakeId) -> dict[str, Any]:
    if kind == "mcp_approval_response":
        _string(item, "approval_request_id", where)
        if not isinstance(item.get("approve"), bool):
            raise _bad(f"{where}.approve must be true or false.", f"{where}.approve")
        _string(item, "reason", where, optional=True)
        keys = ("approval_request_id", "approve", "reason")
    else:
        _string(item, "server_label", where)
        if kind == "mcp_list_tools":
            if not isinstance(item.get("tools"), list):
                raise _bad(f"{where}.tools must be a list of tools.", f"{where}.tools")
            _string(item, "error", where, optional=True)
            keys = ("server_label", "tools", "error")
        else:
            _string(item, "name", where)
            _string(item, "arguments", where)
            keys = ("server_label", "name", "arguments")
            if kind == "mcp_call":
                _string(item, "output", where, optional=True)
                _string(item, "approval_request_id", where, optional=True)
                keys += ("output", "error", "status", "approval_request_id")
    out = {"id": item.get("id") or make_id(it.PREFIX[kind]), "type": kind}
    out |= {k: item[k] for k in keys if k in item}
    if kind == "mcp_call":
        out.setdefault("status", "failed" if item.get("error") else "completed")
    return out


def read_items(given: list[Any], make_id: MakeId) -> list[dict[str, Any]]:
    """The given ``items`` as they are stored (ids kept or made); a 400 naming the
    first bad field (``items.2.content.0.type``)."""
    out = []
    for i, item in enumerate(given):
        where = f"items.{i}"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object (an item).", where)
        given_id = item.get("id")
        if given_id is not None and not (isinstance(given_id, str) and 0 < len(given_id) <= 64):
            raise _bad(f"{where}.id must be a string of 1 to 64 characters.", f"{where}.id")
        kind = item.get("type", "message")
        if kind in _READ_BY_RESPONSES:
            try:
                (stored,), _ = read_input([item], make_id)
            except InvalidRequestError as e:
                param = (e.param or "").replace("input.0", where, 1)
                raise _bad(e.message.replace("input.0", where), param) from None
            out.append(stored)
        elif kind in it.PREFIX:
            out.append(_mcp_item(item, kind, where, make_id))
        else:
            raise _bad(
                f"{where}: items of type {kind!r} are not supported; send message, "
                "function_call, function_call_output, reasoning or MCP items.",
                f"{where}.type",
            )
    return out


def to_conversation(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "conversation",
        "created_at": int(c.created_at.timestamp()),
        "metadata": c.metadata,
    }


def deleted(conversation_id: str) -> dict[str, Any]:
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


def shown(item: dict[str, Any], sealed: bool) -> dict[str, Any]:
    """A stored item as answered; ``sealed``: a reasoning item carries its thinking
    as ``encrypted_content`` (``include``), as ``/v1/responses`` gives it."""
    if sealed and item.get("type") == "reasoning":
        text = it.text_of(item.get("content") or item.get("summary") or [])
        return item | {"encrypted_content": seal(text)}
    return item


def item_list(page: list[dict[str, Any]], has_more: bool, sealed: bool) -> dict[str, Any]:
    data = [shown(x, sealed) for x in page]
    return {
        "object": "list",
        "data": data,
        # the schema has them as strings; an empty page has none to name
        "first_id": data[0]["id"] if data else "",
        "last_id": data[-1]["id"] if data else "",
        "has_more": has_more,
    }
