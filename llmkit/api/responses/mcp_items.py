"""The Responses API's MCP shapes, pure: an ``mcp`` tool of a request read and
checked, the MCP items of an input read back into calls and results, and the
output items a run answers with (``mcp_list_tools``, ``mcp_call``,
``mcp_approval_request``), as OpenAI's spec has them.

An approval request and the call it asks about share one id: the request is
``mcpr_<call id>``, the call item ``mcp_<call id>``. So an
``mcp_approval_response`` (naming the request) finds its call in the stored
history alone, with no table of pending approvals to keep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from llmkit.api.mcp.servers import CallResult, RemoteTool, check_headers
from llmkit.core.types import ToolCall
from llmkit.errors import InvalidRequestError

MCP_ITEMS = ("mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response")
_APPROVALS = ("always", "never")


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def call_id_of(item_id: str) -> str:
    """The call an ``mcp_call`` or ``mcp_approval_request`` item id stands for."""
    for prefix in ("mcpr_", "mcp_"):
        if item_id.startswith(prefix):
            return item_id[len(prefix) :]
    return item_id


def _names(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise _bad(f"{where} must be a list of tool names.", where)
    return list(value)


def _filter(value: Any, where: str) -> dict[str, Any] | None:
    """A list of names or ``{"tool_names", "read_only"}`` (OpenAI's MCPToolFilter)."""
    if value is None:
        return None
    if isinstance(value, list):
        return {"tool_names": _names(value, where)}
    if not isinstance(value, dict) or set(value) - {"tool_names", "read_only"}:
        raise _bad(f"{where} must be tool names or {{'tool_names', 'read_only'}}.", where)
    if "read_only" in value and not isinstance(value["read_only"], bool):
        raise _bad(f"{where}.read_only must be true or false.", f"{where}.read_only")
    return {
        "tool_names": _names(value.get("tool_names"), f"{where}.tool_names"),
        "read_only": value.get("read_only"),
    }


def read_mcp_tool(t: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``mcp`` tool of a request, checked: its label (a configured server's
    name, or the label of ``server_url``), the tools allowed, approval, headers."""
    label = t.get("server_label")
    if not isinstance(label, str) or not label:
        raise _bad(f"{where}.server_label must name the MCP server.", f"{where}.server_label")
    url = t.get("server_url")
    if url is not None and not isinstance(url, str):
        raise _bad(f"{where}.server_url must be a URL.", f"{where}.server_url")
    if t.get("connector_id") is not None:
        raise _bad(
            f"{where}.connector_id: connectors are OpenAI's own; name an MCP server.",
            f"{where}.connector_id",
        )
    approval = t.get("require_approval", "always")
    if approval is None:
        approval = "always"
    if isinstance(approval, dict):
        if set(approval) - set(_APPROVALS):
            raise _bad(
                f"{where}.require_approval takes 'always', 'never' or "
                "{'always': filter, 'never': filter}.",
                f"{where}.require_approval",
            )
        approval = {k: _filter(v, f"{where}.require_approval.{k}") for k, v in approval.items()}
    elif approval not in _APPROVALS:
        raise _bad(
            f"{where}.require_approval must be 'always', 'never' or a filter object.",
            f"{where}.require_approval",
        )
    return {
        "server_label": label,
        "server_url": url,
        "allowed_tools": _filter(t.get("allowed_tools"), f"{where}.allowed_tools"),
        "require_approval": approval,
        "headers": check_headers(t.get("headers"), f"{where}.headers"),
        "where": where,
    }


def mcp_tool_echo(asked: dict[str, Any]) -> dict[str, Any]:
    """The tool as a Response repeats it; headers are not repeated (credentials)."""
    out: dict[str, Any] = {"type": "mcp", "server_label": asked["server_label"]}
    if asked["server_url"] is not None:
        out["server_url"] = asked["server_url"]
    allowed = asked["allowed_tools"]
    out["allowed_tools"] = (
        None if allowed is None else {k: v for k, v in allowed.items() if v is not None}
    )
    approval = asked["require_approval"]
    out["require_approval"] = (
        approval
        if isinstance(approval, str)
        else {k: {n: x for n, x in v.items() if x is not None} for k, v in approval.items() if v}
    )
    out["headers"] = None
    return out


def _matches(f: dict[str, Any] | None, tool: RemoteTool) -> bool:
    if f is None:
        return False
    names = f.get("tool_names")
    if names is not None and tool.name not in names:
        return False
    if f.get("read_only") is not None:
        read_only = bool((tool.annotations or {}).get("read_only_hint"))
        if read_only != f["read_only"]:
            return False
    return names is not None or f.get("read_only") is not None


def allowed(asked: dict[str, Any], tool: RemoteTool) -> bool:
    """Whether ``allowed_tools`` lets the model see (and call) ``tool``."""
    return asked["allowed_tools"] is None or _matches(asked["allowed_tools"], tool)


def needs_approval(asked: dict[str, Any], tool: RemoteTool) -> bool:
    approval = asked["require_approval"]
    if isinstance(approval, str):
        return approval == "always"
    if _matches(approval.get("never"), tool):
        return False
    if _matches(approval.get("always"), tool):
        return True
    return "never" not in approval  # a tool no filter names: approval, OpenAI's default


def read_mcp_item(
    item: dict[str, Any], where: str, make_id: Callable[[str], str]
) -> tuple[dict[str, Any], ToolCall | None, str | None]:
    """An input MCP item: as stored, the call it stands for, and its result's text."""
    kind = item["type"]

    def text(key: str, required: bool = True) -> str:
        v = item.get(key)
        if not isinstance(v, str) or (required and not v):
            raise _bad(f"{where}.{key} must be a string.", f"{where}.{key}")
        return v

    if kind == "mcp_approval_response":
        if not isinstance(item.get("approve"), bool):
            raise _bad(f"{where}.approve must be true or false.", f"{where}.approve")
        stored = {
            "id": item.get("id") or make_id("mcpa"),
            "type": kind,
            "approval_request_id": text("approval_request_id"),
            "approve": item["approve"],
            "reason": item.get("reason") if isinstance(item.get("reason"), str) else None,
        }
        return stored, None, None
    if kind == "mcp_list_tools":
        if not isinstance(item.get("tools"), list):
            raise _bad(f"{where}.tools must be a list.", f"{where}.tools")
        stored = {"id": text("id"), "type": kind, "server_label": text("server_label")}
        return stored | {"tools": item["tools"], "error": item.get("error")}, None, None
    item_id, name, arguments = text("id"), text("name"), text("arguments", required=False)
    call = ToolCall(call_id_of(item_id), name, arguments or "{}")
    base = {"id": item_id, "type": kind, "server_label": text("server_label")}
    base |= {"name": name, "arguments": arguments}
    if kind == "mcp_approval_request":
        return base, call, None
    output, error = item.get("output"), item.get("error")
    result = output if isinstance(output, str) else json.dumps(error) if error else ""
    stored = base | {"output": output, "error": error, "status": item.get("status", "completed")}
    stored["approval_request_id"] = item.get("approval_request_id")
    return stored, call, result


# -- output items -------------------------------------------------------------------------


def list_tools_item(
    item_id: str, label: str, tools: list[RemoteTool], error: str | None
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "mcp_list_tools",
        "server_label": label,
        "tools": [
            {
                "name": t.name,
                "description": t.description or None,
                "input_schema": t.input_schema,
                "annotations": t.annotations,
            }
            for t in tools
        ],
        "error": error,
    }


def approval_request_item(call: ToolCall, label: str) -> dict[str, Any]:
    return {
        "id": f"mcpr_{call.id}",
        "type": "mcp_approval_request",
        "server_label": label,
        "name": call.name,
        "arguments": call.arguments_json,
    }


def call_item(
    call: ToolCall, label: str, result: CallResult | None, approved: bool | None
) -> dict[str, Any]:
    """An ``mcp_call``: in progress (``result`` None), completed, or failed."""
    error: dict[str, Any] | None = None
    if result is not None and result.error:
        if result.protocol:
            error = {"type": "mcp_protocol_error", "code": -32000, "message": result.output}
        else:
            content = [{"type": "text", "text": result.output}]
            error = {"type": "mcp_tool_execution_error", "content": content}
    status = "in_progress" if result is None else "failed" if result.error else "completed"
    return {
        "id": f"mcp_{call.id}",
        "type": "mcp_call",
        "server_label": label,
        "name": call.name,
        "arguments": call.arguments_json,
        "output": None if result is None or result.error else result.output,
        "error": error,
        "status": status,
        "approval_request_id": None if approved is None else f"mcpr_{call.id}",
    }
