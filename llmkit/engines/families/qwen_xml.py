"""Qwen3-Coder's XML-style calls (also Qwen3.5's)::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

The first ``<tool_call>`` of a reply is sometimes left out. A value is JSON when
it parses as JSON (numbers, booleans, objects), else the text as it is; where
the function's schema takes a string there, the text (``jsontext.settle``).
"""

from __future__ import annotations

import json
import re

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import Rules, chosen, lit, repeat
from llmkit.engines.families.jsontext import Bare, find
from llmkit.engines.families.stream import Call

OPEN, CLOSE = "<tool_call>", "</tool_call>"
FUNC, END_FUNC = "<function=", "</function>"
_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)</function>", re.S)
_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.S)
# A string value in a forced call: any text without "</" (which would end it).
_TEXT = r'( [^<] | "<" [^/] )*'


class QwenXml:
    triggers = (OPEN, FUNC)
    layout = ()

    def end(self, block: str, memo: dict) -> int | None:
        if block.startswith(OPEN):
            at = find(block, CLOSE, memo)
            return None if at < 0 else at + len(CLOSE)
        at = find(block, END_FUNC, memo)  # opened without <tool_call>: its </tool_call> may follow
        if at < 0:
            return None
        at += len(END_FUNC)
        rest = block[at:].lstrip()
        if rest.startswith(CLOSE):
            return len(block) - len(rest) + len(CLOSE)
        return None if CLOSE.startswith(rest) else at

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        m = _FUNCTION.search(block)
        if m is None:
            return None
        args = {k.strip(): Bare(v) for k, v in _PARAM.findall(m[2])}
        return [(m[1].strip(), args)]

    def text(self, block: str) -> str:
        return block

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        funcs = []
        for i, tool in enumerate(chosen(tools, name)):
            funcs.append(f"fn-{i}")
            g.add(f"fn-{i} ::= {lit(FUNC + tool.name + '>' + chr(10))} {_params(g, tool, i)}")
        # the first call may leave its <tool_call> out, as the parser allows
        g.add(f"root ::= {repeat('tool-call', lit(chr(10)), parallel, 'first-call')}")
        g.add(f"first-call ::= {lit(OPEN + chr(10))}? fn")
        g.add(f"tool-call ::= {lit(OPEN + chr(10))} fn")
        g.add(f"fn ::= ({' | '.join(funcs)}) {lit(END_FUNC + chr(10) + CLOSE)}")
        return g.text()


def _params(g: Rules, tool: Tool, i: int) -> str:
    """The parameters of ``tool`` in the order its schema lists them, the required
    ones always, each value held to its property's schema (a string one: text)."""
    schema = json.loads(tool.parameters_json)
    required = set(schema.get("required", ()))
    parts = []
    for j, (key, prop) in enumerate((schema.get("properties") or {}).items()):
        value = text_value(g, prop, f"p-{i}-{j}")
        head, tail = lit(f"<parameter={key}>\n"), lit("\n</parameter>\n")
        part = f"{head} {value} {tail}"
        parts.append(f"({part})" + ("" if key in required else "?"))
    return " ".join(parts)


def text_value(g: Rules, prop: object, name: str) -> str:
    """The GBNF of a parameter's value written bare: a string property's text (an
    enum's values), any other property's JSON held to its schema."""
    if not isinstance(prop, dict):
        return _TEXT
    enum = prop.get("enum")
    if enum and all(isinstance(v, str) for v in enum):
        return "(" + " | ".join(lit(v) for v in enum) + ")"
    kind = prop.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind) or not prop:
        return _TEXT
    return g.schema(prop, name)


QWEN_XML = QwenXml()
