"""Calls as one JSON array after a marker: Granite 3.x's
``<|tool_call|>[{"name": ..., "arguments": {...}}]`` and Phi-4-mini's
``functools[{"name": ..., "arguments": {...}}]``. The array's closing bracket
ends the calls."""

from __future__ import annotations

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import WS, Rules, lit, repeat
from llmkit.engines.families.jsontext import json_end, load, named_call
from llmkit.engines.families.stream import Call


class JsonList:
    def __init__(self, marker: str, layout: tuple[str, ...] = ()) -> None:
        self.marker = marker
        self.triggers = (marker,)
        self.layout = layout

    def end(self, block: str, memo: dict) -> int | None:
        return json_end(block, len(self.marker), memo)

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        items = load(block[len(self.marker) :])
        if isinstance(items, dict):  # one call, not in a list
            items = [items]
        if not isinstance(items, list) or not items:
            return None
        calls = [named_call(c) for c in items]
        return None if None in calls else calls  # type: ignore[return-value]

    def text(self, block: str) -> str:
        return block

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        call = g.call_object(tools, name)
        calls = repeat(call, lit(", "), parallel)
        g.add(f'root ::= {lit(self.marker + "[")} {WS} {calls} {WS} "]"')
        return g.text()


GRANITE = JsonList("<|tool_call|>")
# Granite 3.3 thinking wraps its answer: <think>...</think><response>...</response>
GRANITE_THINKING = JsonList("<|tool_call|>", layout=("<response>", "</response>"))
PHI4 = JsonList("functools")
