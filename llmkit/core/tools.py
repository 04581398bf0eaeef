"""Tool calling, pure: the JSON Schema every call must match, tools as chat
templates take them, and calls assembled from stream deltas.

The call schema is what constrained decoding holds a model to: ``{"name": <one
of the tools>, "arguments": <that tool's parameters>}``, name first, so a stream
knows which function it is calling before its arguments. (Checking the tools a
request offers raises llmkit errors, so it lives with the dialects: ``api.tools``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from llmkit.core.types import Tool, ToolCall, ToolCallDelta


def call_schema(tools: tuple[Tool, ...], name: str | None = None) -> dict[str, Any]:
    """The JSON Schema of one call of one of ``tools`` (only ``name`` when given)."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": json.loads(t.parameters_json)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
        if name is None or t.name == name
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools_as_json(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """The tools as chat templates (and prompts) take them: OpenAI's own shape."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": json.loads(t.parameters_json),
            },
        }
        for t in tools
    ]


def join_calls(deltas: Iterable[ToolCallDelta]) -> list[ToolCall]:
    """The calls a stream's deltas make up, in index order."""
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        c = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
        c["id"] = d.id or c["id"]
        c["name"] = d.name or c["name"]
        c["arguments"] += d.arguments
    return [
        ToolCall(id=c["id"], name=c["name"], arguments_json=c["arguments"] or "{}")
        for _, c in sorted(calls.items())
    ]
