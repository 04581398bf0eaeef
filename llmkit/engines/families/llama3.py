"""Llama 3.1 - 3.3's calls: a JSON object with ``parameters`` (or
``arguments``) as the reply, or after ``<|python_tag|>``, where Llama 3.1 also
calls its built-in tools as ``brave_search.call(query="...")`` and writes code
for its interpreter::

    {"name": "get_weather", "parameters": {"city": "Paris"}}
    <|python_tag|>{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}

An object without ``parameters`` / ``arguments`` is not a call (JSON output
that has a "name" stays content).
"""

from __future__ import annotations

import ast
import re

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import Rules, chosen, lit, repeat
from llmkit.engines.families.jsontext import json_end, load, named_call
from llmkit.engines.families.stream import Call

TAG = "<|python_tag|>"
_TYPED = '"type": "function", '
_BUILTIN = re.compile(r"\s*(\w+)\.call\((.*)\)\s*", re.S)


class Llama3:
    triggers = (TAG, '{"name"', '{"type"')
    layout = ()

    def end(self, block: str, memo: dict) -> int | None:
        if block.startswith(TAG):
            return None  # ends with the reply (<|eom_id|> / <|eot_id|> stop it)
        return json_end(block, 0, memo)

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        body = block.removeprefix(TAG)
        if not body.lstrip().startswith("{"):
            call = _builtin(body) if block.startswith(TAG) else None
            return None if call is None else [call]
        out, at = [], 0
        while body[at:].strip(" \t\n;"):  # several objects, ";" between them
            while body[at] in " \t\n;":
                at += 1
            end = json_end(body, at)
            call = None if end is None else named_call(load(body[at:end]), need_args=True)
            if call is None:
                return None
            out.append(call)
            at = end  # type: ignore[assignment]
        return out or None

    def text(self, block: str) -> str:
        return block

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        funcs = []
        for i, tool in enumerate(chosen(tools, name)):
            funcs.append(f"fn-{i}")
            head = lit('"name": "' + tool.name + '", "parameters": ')
            g.add(f"fn-{i} ::= {head} {g.args(tool, i)} {lit('}')}")
        # {"type": "function", ...} or {"name": ...}: a lazy grammar starts at either
        g.add(f"root ::= {lit(TAG)}? {repeat('tool-call', lit(chr(10)), parallel)}")
        g.add(f'tool-call ::= "{{" {lit(_TYPED)}? call')
        g.add(f"call ::= {' | '.join(funcs)}")
        return g.text()


def _builtin(body: str) -> Call | None:
    """``name.call(key="value", ...)`` as a call; code for the interpreter as
    ``python`` with its ``code``."""
    m = _BUILTIN.fullmatch(body)
    if m is None:
        return ("python", {"code": body.strip()}) if body.strip() else None
    try:
        node = ast.parse(f"f({m[2]})", mode="eval").body
        args = {k.arg: ast.literal_eval(k.value) for k in node.keywords}  # type: ignore[attr-defined]
    except (SyntaxError, ValueError):
        return None
    return m[1], args


LLAMA3 = Llama3()
