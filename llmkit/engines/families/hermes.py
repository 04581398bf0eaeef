"""The ``<tool_call>`` JSON syntax (Hermes, Qwen2.5, Qwen3, QwQ, Granite 4, and
llmkit's generic format)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
"""

from __future__ import annotations

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import WS, Rules, lit, repeat
from llmkit.engines.families.jsontext import find, load, named_call
from llmkit.engines.families.stream import Call

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class Hermes:
    triggers = (OPEN,)
    layout = ()

    def end(self, block: str, memo: dict) -> int | None:
        at = find(block, CLOSE, memo)
        return None if at < 0 else at + len(CLOSE)

    def _body(self, block: str) -> str:
        return block[len(OPEN) :].removesuffix(CLOSE)

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        call = named_call(load(self._body(block)))
        return None if call is None else [call]

    def text(self, block: str) -> str:
        return self._body(block).strip()  # what it said, without the tags

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        call = g.call_object(tools, name)
        g.add(f"root ::= {repeat('tool-call', lit(chr(10)), parallel)}")
        g.add(f"tool-call ::= {lit(OPEN)} {WS} {call} {WS} {lit(CLOSE)}")
        return g.text()


HERMES = Hermes()
