"""The Responses API's answers, from what the engine produced: the output items
(thinking, text, calls), the ``Response`` object and its usage, and the page of
a stored response's input items. ``convert.py`` reads the requests; the stream
of typed events is ``stream.py``'s. Ids are the caller's ``make_id``'s and the
clock the caller's ``Head``: nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from llmkit.api.openai.replies import Head
from llmkit.api.responses.convert import Turn
from llmkit.api.responses.input_items import MakeId, output_text
from llmkit.api.responses.reasoning import reasoning_item
from llmkit.core.tools import join_calls
from llmkit.core.types import Chunk, Message, ToolCall, Usage
from llmkit.errors import InvalidRequestError


def to_usage(usage: Usage | None) -> dict[str, Any]:
    u = usage or Usage(0, 0)
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [output_text(text)],
    }


def call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments_json,
    }


def to_output(
    text: str, last: Chunk, make_id: MakeId, *, sealed: bool = False
) -> tuple[list[dict], Message]:
    """The output items of a finished generation (its thinking, its text, then
    its calls), and the assistant message they add to the history; ``sealed``:
    as ``Turn.sealed``."""
    calls = join_calls(last.tool_calls)
    status = "incomplete" if last.finish_reason == "length" else "completed"
    # Cut while still thinking: the thinking is what is incomplete.
    cut = "incomplete" if status == "incomplete" and not (text or calls) else "completed"
    thought = reasoning_item(make_id("rs"), last.reasoning, cut, sealed=sealed)
    output = [thought] if last.reasoning else []
    output += [message_item(make_id("msg"), text, status)] if text or not calls else []
    output += [call_item(make_id("fc"), c) for c in calls]
    return output, Message("assistant", text, tool_calls=tuple(calls), reasoning=last.reasoning)


def to_response(
    head: Head,
    turn: Turn,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    completed_at: int | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``Response`` object; ``status``: in_progress, completed, incomplete or failed."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    # usage is absent, not null, until there is one (the schema has it non-nullable)
    counted = {} if status == "in_progress" else {"usage": to_usage(usage)}
    return {
        "id": head.id,
        "object": "response",
        "created_at": head.created,
        "status": status,
        "completed_at": completed_at if status == "completed" else None,
        "error": error,
        "incomplete_details": incomplete,
        "model": head.model,
        "output": output,
        "truncation": "disabled",
        **counted,
        **turn.echo,
    }


def input_item_list(
    items: list[dict[str, Any]], *, order: str, limit: int, after: str | None
) -> dict[str, Any]:
    """A page of ``items`` (oldest first as given) as OpenAI's list object."""
    ordered = items[::-1] if order == "desc" else list(items)
    if after is not None:
        ids = [it["id"] for it in ordered]
        if after not in ids:
            raise InvalidRequestError(
                f"after: no input item of this response has the id '{after}'.", param="after"
            )
        ordered = ordered[ids.index(after) + 1 :]
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }
