"""Pure translations from a Responses API request to llmkit's core types.

``from_request`` reads a request into a ``Turn`` (its input as stored items and
as core messages, read by ``input_items.py``; the tools, the sampling, the
output format) and ``to_generate_request`` makes the engine's request of it.
The answer (output items, the ``Response`` object) is built by ``replies.py``.
Ids are made by the caller's ``make_id``: nothing here does I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from llmkit.api.images import Images
from llmkit.api.openai.convert import DEFAULT_TEMPERATURE, DEFAULTS
from llmkit.api.responses.input_items import MakeId, read_input
from llmkit.api.responses.mcp_items import mcp_tool_echo, read_mcp_tool
from llmkit.api.responses.reasoning import ENCRYPTED, read_reasoning
from llmkit.api.responses.schemas import ResponseCreateRequest
from llmkit.api.tools import check_choice, check_schema, tool_from_dict
from llmkit.core.types import (
    Effort,
    GenerateRequest,
    Message,
    SamplingParams,
    Tool,
    ToolChoice,
)
from llmkit.errors import InvalidRequestError


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


def from_request(req: ResponseCreateRequest, make_id: MakeId, images: Images | None = None) -> Turn:
    decisions: dict[str, bool] = {}
    items, messages = read_input(req.input, make_id, images, decisions)
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
