"""The Responses API's ``input``, read: items with ids (as ``input_items`` lists
them and the store keeps them) and the same turns as core messages.

Messages (text, and a user's ``input_image`` parts), function calls and their
outputs, reasoning items (``reasoning.py``) and MCP items (``mcp_items.py``) are
read here; a request's other fields are ``convert.py``'s. The conversations
API reads the items it is given through ``read_input`` too. Ids are made by the
caller's ``make_id``: nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from llmkit.api.images import ImageRef, Images
from llmkit.api.responses.mcp_items import MCP_ITEMS, call_id_of, read_mcp_item
from llmkit.api.responses.reasoning import read_reasoning_item
from llmkit.core.types import Image, Message, ToolCall
from llmkit.errors import InvalidRequestError
from llmkit.memory.items import add_call

MakeId = Callable[[str], str]  # "msg" -> "msg_3f9a..."
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = {"input_text", "output_text", "text"}


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _text_of(
    content: Any, where: str, images: Images | None = None, role: str = "user"
) -> tuple[str, list[dict[str, Any]], tuple[Image, ...]]:
    """A message's content (a string or parts) as one text, as parts, and its
    images (``input_image`` parts: a user message's, where ``images`` is given)."""
    if isinstance(content, str):
        return content, [{"type": "input_text", "text": content}], ()
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of content parts.", where)
    texts, parts, seen = [], [], []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_image" and images is not None and role == "user":
            ref = image_ref(part, f"{where}.{j}")
            detail = part.get("detail") or "auto"
            if detail not in ("auto", "low", "high"):
                raise _bad(f"{where}.{j}.detail must be auto, low or high.", f"{where}.{j}.detail")
            seen.append(images.get(ref, detail))
            parts.append({"type": "input_image", "image_url": ref.source, "detail": detail})
            continue
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            also = " and input_image parts (in user messages)" if images is not None else ""
            raise _bad(
                f"{where}.{j}: content parts of type {kind!r} are not supported here; send "
                f"input_text (or output_text) parts with a 'text' string{also}.",
                f"{where}.{j}",
            )
        texts.append(part["text"])
        parts.append({"type": "input_text", "text": part["text"]})
    return "".join(texts), parts, tuple(seen)


def image_ref(part: dict[str, Any], where: str) -> ImageRef:
    """Where an ``input_image`` part's image is: its ``image_url`` (a data URI or a URL)."""
    url = part.get("image_url")
    if isinstance(url, dict):  # the Chat Completions spelling, which clients mix up
        url = url.get("url")
    if not isinstance(url, str) or not url:
        what = "file_id images are not supported; send" if part.get("file_id") else "send"
        raise _bad(
            f"{where}: {what} the image as image_url (a base64 data URI or an http(s) URL).",
            f"{where}.image_url",
        )
    return ImageRef(url, f"{where}.image_url")


def output_text(text: str) -> dict[str, Any]:
    """An ``output_text`` content part (an assistant message's, given or answered)."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def read_input(
    value: str | list[Any],
    make_id: MakeId,
    images: Images | None = None,
    decisions: dict[str, bool] | None = None,
) -> tuple[list[dict], list[Message]]:
    """``input`` as items with ids, and as core messages. Consecutive function
    calls (and an assistant message just before them) are one assistant turn;
    a reasoning item gives its thinking to the assistant turn that follows it.
    ``images``: the request's images as ``api.images`` read them. MCP items become
    the calls and results they were (``mcp.read_mcp_item``); the answers of
    ``mcp_approval_response`` items go to ``decisions``."""
    images = images if images is not None else Images()
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not value:
        raise _bad("input is empty; send a string or at least one item.", "input")
    items: list[dict[str, Any]] = []
    messages: list[Message] = []
    thought = ""  # a reasoning item's, for the assistant turn after it
    for i, item in enumerate(value):
        where = f"input.{i}"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object (an input item).", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise _bad(
                    f"{where}.role must be user, system, developer or assistant; got {role!r}.",
                    f"{where}.role",
                )
            text, parts, seen = _text_of(item.get("content"), f"{where}.content", images, role)
            stored: dict[str, Any] = {"id": item.get("id") or make_id("msg"), "type": "message"}
            if role == "assistant":
                stored |= {"role": role, "status": "completed", "content": [output_text(text)]}
            else:
                stored |= {"role": role, "status": "completed", "content": parts}
            items.append(stored)
            if role == "assistant":
                messages.append(Message("assistant", text, reasoning=thought))
                thought = ""
            else:
                messages.append(Message(_ROLES[role], text, images=seen))  # type: ignore[arg-type]
        elif kind == "function_call":
            call = _function_call(item, where)
            items.append({"id": item.get("id") or make_id("fc"), **call, "status": "completed"})
            tool_call = ToolCall(call["call_id"], call["name"], call["arguments"])
            thought = add_call(messages, tool_call, thought)
        elif kind in MCP_ITEMS:
            stored, call, output = read_mcp_item(item, where, make_id)
            items.append(stored)
            if kind == "mcp_approval_response" and decisions is not None:
                decisions[call_id_of(stored["approval_request_id"])] = stored["approve"]
            known = any(c.id == call.id for m in messages for c in m.tool_calls) if call else True
            if call is not None and not known:  # an approved call's request came before it
                thought = add_call(messages, call, thought)
            if call is not None and output is not None:
                messages.append(Message("tool", output, tool_call_id=call.id))
        elif kind == "reasoning":
            stored, thought = read_reasoning_item(item, where)
            items.append({"id": item.get("id") or make_id("rs"), **stored})
        elif kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where}.call_id must be the call's id.", f"{where}.call_id")
            if not isinstance(output, str):
                output, _, _ = _text_of(output, f"{where}.output")
            items.append(
                {
                    "id": item.get("id") or make_id("fco"),
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": output,
                    "status": "completed",
                }
            )
            messages.append(Message("tool", output, tool_call_id=call_id))
        else:
            raise _bad(
                f"{where}: input items of type {kind!r} are not supported; send message, "
                "function_call, function_call_output, reasoning or MCP items.",
                f"{where}.type",
            )
    return items, messages


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise _bad(f"{where}.{key} must be a string.", f"{where}.{key}")
    try:
        json.loads(item["arguments"])
    except ValueError:
        raise _bad(
            f"{where}.arguments must be a JSON object, as text.", f"{where}.arguments"
        ) from None
    return {k: item[k] for k in ("call_id", "name", "arguments")} | {"type": "function_call"}
