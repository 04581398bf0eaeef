"""Pure translations between the Responses API's wire format and llmkit's core types.

``from_request`` reads a request into a ``Turn`` (its input as stored items and
as core messages, the tools, the sampling, the output format); ``to_output``
and ``to_response`` build the answered items and the ``Response`` object from
what the engine produced. Ids are made by the caller's ``make_id``, the clock
is the caller's ``Head``: nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from llmkit.api.openai.convert import DEFAULT_TEMPERATURE, DEFAULTS
from llmkit.api.openai.replies import Head
from llmkit.api.responses.mcp_items import (
    MCP_ITEMS,
    call_id_of,
    mcp_tool_echo,
    read_mcp_item,
    read_mcp_tool,
)
from llmkit.api.responses.reasoning import (
    ENCRYPTED,
    read_reasoning,
    read_reasoning_item,
    reasoning_item,
)
from llmkit.api.responses.schemas import ResponseCreateRequest
from llmkit.api.tools import check_choice, check_schema, tool_from_dict
from llmkit.core.tools import join_calls
from llmkit.core.types import (
    Chunk,
    Effort,
    GenerateRequest,
    Message,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from llmkit.errors import InvalidRequestError

MakeId = Callable[[str], str]  # "msg" -> "msg_3f9a..."
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = {"input_text", "output_text", "text"}


@dataclass(frozen=True)
class Turn:
    """What one request asks, read once."""

    items: list[dict[str, Any]]  # the input as items with ids (what input_items lists)
    messages: list[Message]  # the same input as core messages
    sampling: SamplingParams  # what the request sets; OpenAI's defaults fill the rest
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    tool_name: str | None = None
    parallel: bool = True
    echo: dict[str, Any] = field(default_factory=dict)  # the request's fields a Response repeats
    think: bool | None = None
    effort: Effort | None = None
    sealed: bool = False  # reasoning items carry encrypted_content (``include``)
    # The request's MCP tools, read (``mcp.read_mcp_tool``), and the user's answers to
    # approval requests (``mcp_approval_response`` items), by the call id asked about.
    mcp: tuple[dict[str, Any], ...] = ()
    decisions: dict[str, bool] = field(default_factory=dict)


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _text_of(content: Any, where: str) -> tuple[str, list[dict[str, Any]]]:
    """A message's content (a string or text parts) as one text, and as parts."""
    if isinstance(content, str):
        return content, [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of content parts.", where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise _bad(
                f"{where}.{j}: content parts of type {kind!r} are not supported; send "
                "input_text (or output_text) parts with a 'text' string.",
                f"{where}.{j}",
            )
        texts.append(part["text"])
    text = "".join(texts)
    return text, [{"type": "input_text", "text": t} for t in texts]


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def read_input(
    value: str | list[Any], make_id: MakeId, decisions: dict[str, bool] | None = None
) -> tuple[list[dict], list[Message]]:
    """``input`` as items with ids, and as core messages. Consecutive function
    calls (and an assistant message just before them) are one assistant turn;
    a reasoning item gives its thinking to the assistant turn that follows it.
    MCP items become the calls and results they were (``mcp.read_mcp_item``);
    the answers of ``mcp_approval_response`` items go to ``decisions``."""
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
            text, parts = _text_of(item.get("content"), f"{where}.content")
            stored: dict[str, Any] = {"id": item.get("id") or make_id("msg"), "type": "message"}
            if role == "assistant":
                stored |= {"role": role, "status": "completed", "content": [_output_text(text)]}
            else:
                stored |= {"role": role, "status": "completed", "content": parts}
            items.append(stored)
            if role == "assistant":
                messages.append(Message("assistant", text, reasoning=thought))
                thought = ""
            else:
                messages.append(Message(_ROLES[role], text))  # type: ignore[arg-type]
        elif kind == "function_call":
            call = _function_call(item, where)
            items.append({"id": item.get("id") or make_id("fc"), **call, "status": "completed"})
            tool_call = ToolCall(call["call_id"], call["name"], call["arguments"])
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and not thought:
                messages[-1] = replace(last, tool_calls=(*last.tool_calls, tool_call))
            else:
                messages.append(Message("assistant", "", (tool_call,), reasoning=thought))
                thought = ""
        elif kind in MCP_ITEMS:
            stored, call, output = read_mcp_item(item, where, make_id)
            items.append(stored)
            if kind == "mcp_approval_response" and decisions is not None:
                decisions[call_id_of(stored["approval_request_id"])] = stored["approve"]
            known = any(c.id == call.id for m in messages for c in m.tool_calls) if call else True
            if call is not None and not known:  # an approved call's request came before it
                last = messages[-1] if messages else None
                if last is not None and last.role == "assistant" and not thought:
                    messages[-1] = replace(last, tool_calls=(*last.tool_calls, call))
                else:
                    messages.append(Message("assistant", "", (call,), reasoning=thought))
                    thought = ""
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
                output, _ = _text_of(output, f"{where}.output")
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


def read_tools(
    req: ResponseCreateRequest,
) -> tuple[tuple[Tool, ...], list[dict[str, Any]], tuple[dict[str, Any], ...]]:
    """The function tools, the same as a Response repeats them (MCP tools too),
    and the MCP tools read (``mcp.read_mcp_tool``)."""
    tools, echo, mcp = [], [], []
    for i, t in enumerate(req.tools or ()):
        where = f"tools.{i}"
        kind = t.get("type") if isinstance(t, dict) else None
        if kind == "mcp":
            asked = read_mcp_tool(t, where)
            mcp.append(asked)
            echo.append(mcp_tool_echo(asked))
            continue
        if kind != "function":
            raise _bad(
                f"{where}: tools of type {kind!r} are not supported here; only function "
                "tools ({'type': 'function', 'name', 'parameters'}) and MCP tools "
                "({'type': 'mcp', 'server_label', ...}).",
                f"{where}.type",
            )
        tool = tool_from_dict({k: v for k, v in t.items() if k != "type"}, where)
        tools.append(tool)
        echo.append(
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description or None,
                "parameters": json.loads(tool.parameters_json),
                "strict": bool(t.get("strict", True)),
            }
        )
    return tuple(tools), echo, tuple(mcp)


def read_tool_choice(req: ResponseCreateRequest) -> tuple[ToolChoice, str | None]:
    wanted = req.tool_choice
    if wanted is None:
        return "auto", None
    if isinstance(wanted, str):
        if wanted not in ("auto", "none", "required"):
            raise _bad("tool_choice must be auto, none, required or a function.", "tool_choice")
        return wanted, None  # type: ignore[return-value]
    if wanted.get("type") == "mcp" and isinstance(wanted.get("name"), str):
        return "required", wanted["name"]  # a tool of an MCP server (OpenAI's ToolChoiceMCP)
    if wanted.get("type") != "function" or not isinstance(wanted.get("name"), str):
        raise _bad(
            "tool_choice must name a function: {'type': 'function', 'name': ...}.", "tool_choice"
        )
    return "required", wanted["name"]


def read_format(
    req: ResponseCreateRequest, sampling: SamplingParams
) -> tuple[SamplingParams, dict[str, Any]]:
    """``text.format`` as constrained decoding, and as a Response repeats it."""
    fmt = req.text.format if req.text is not None else None
    if fmt is None or fmt.type == "text":
        return sampling, {"type": "text"}
    if fmt.type == "json_object":
        return replace(sampling, response_format="json"), {"type": "json_object"}
    if not fmt.name or fmt.schema_ is None:
        raise _bad("text.format of type json_schema needs a 'name' and a 'schema'.", "text.format")
    check_schema(fmt.schema_, "text.format.schema")
    echo = {
        "type": "json_schema",
        "name": fmt.name,
        "schema": fmt.schema_,
        "strict": bool(fmt.strict),
    }
    if fmt.description:
        echo["description"] = fmt.description
    sampling = replace(sampling, response_format="json", json_schema=json.dumps(fmt.schema_))
    return sampling, echo


def from_request(req: ResponseCreateRequest, make_id: MakeId) -> Turn:
    decisions: dict[str, bool] = {}
    items, messages = read_input(req.input, make_id, decisions)
    tools, tools_echo, mcp = read_tools(req)
    choice, name = read_tool_choice(req)
    if not mcp:  # else checked once the MCP servers' tools are known (``mcp.offer``)
        check_choice(tools, choice, name, "tool_choice")
    # Unset, they are the model's (its Modelfile), then OpenAI's; echoed as asked.
    given = SamplingParams(temperature=req.temperature, top_p=req.top_p)
    sampling, fmt = read_format(req, given)
    temperature = DEFAULT_TEMPERATURE if req.temperature is None else req.temperature
    top_p = 1.0 if req.top_p is None else req.top_p
    parallel = req.parallel_tool_calls is not False
    think, effort, reasoning = read_reasoning(req)
    echo = {
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "metadata": req.metadata or {},
        "parallel_tool_calls": parallel,
        "previous_response_id": req.previous_response_id,
        "reasoning": reasoning,
        "store": req.store is not False,
        "temperature": temperature,
        "top_p": top_p,
        "text": {"format": fmt},
        "tools": tools_echo,
        "tool_choice": _choice_echo(req, choice, name),
    }
    if req.max_tool_calls is not None:
        echo["max_tool_calls"] = req.max_tool_calls
    if req.user is not None:  # a string when present, never null
        echo["user"] = req.user
    sealed = ENCRYPTED in (req.include or ())
    return Turn(
        items,
        messages,
        sampling,
        tools,
        choice,
        name,
        parallel,
        echo,
        think,
        effort,
        sealed,
        mcp,
        decisions,
    )


def _choice_echo(req: ResponseCreateRequest, choice: str, name: str | None) -> Any:
    if name is None:
        return choice
    if isinstance(req.tool_choice, dict) and req.tool_choice.get("type") == "mcp":
        return {"type": "mcp", "server_label": req.tool_choice.get("server_label"), "name": name}
    return {"type": "function", "name": name}


def to_generate_request(
    turn: Turn, messages: tuple[Message, ...], max_output_tokens: int | None
) -> GenerateRequest:
    """The engine's request for ``turn``, given the history fitted to the context."""
    return GenerateRequest(
        messages=messages,
        sampling=turn.sampling,
        defaults=DEFAULTS,
        max_tokens=max_output_tokens,
        tools=turn.tools,
        tool_choice=turn.tool_choice,
        tool_name=turn.tool_name,
        parallel_tool_calls=turn.parallel,
        think=turn.think,
        effort=turn.effort,
    )


# -- answers ------------------------------------------------------------------------------


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
        "content": [_output_text(text)],
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
            raise _bad(f"after: no input item of this response has the id '{after}'.", "after")
        ordered = ordered[ids.index(after) + 1 :]
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }
