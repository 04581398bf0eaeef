"""GLM-4.5 / 4.6 / 4.7's calls: the function's name after ``<tool_call>``, then
key and value tags (a string value bare, any other as JSON)::

    <tool_call>get_weather
    <arg_key>city</arg_key>
    <arg_value>Paris</arg_value>
    </tool_call>
"""

from __future__ import annotations

import json
import re

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import Rules, chosen, lit, repeat
from llmkit.engines.families.jsontext import Bare, find
from llmkit.engines.families.qwen_xml import text_value
from llmkit.engines.families.stream import Call

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_NAME = re.compile(r"\s*([^<\s]+)\s*")
_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>\s*", re.S)


class Glm:
    triggers = (OPEN,)
    layout = ()

    def end(self, block: str, memo: dict) -> int | None:
        at = find(block, CLOSE, memo)
        return None if at < 0 else at + len(CLOSE)

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        if not closed:
            return None
        body = block[len(OPEN) : -len(CLOSE)]
        m = _NAME.match(body)
        if m is None:
            return None
        args, at = {}, m.end()
        while at < len(body):
            pair = _PAIR.match(body, at)
            if pair is None:
                return None
            args[pair[1].strip()] = Bare(pair[2])
            at = pair.end()
        return [(m[1], args)]

    def text(self, block: str) -> str:
        return block

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        funcs = []
        for i, tool in enumerate(chosen(tools, name)):
            schema = json.loads(tool.parameters_json)
            required = set(schema.get("required", ()))
            parts = []
            for j, (key, prop) in enumerate((schema.get("properties") or {}).items()):
                value = text_value(g, prop, f"p-{i}-{j}")
                part = (
                    f"{lit(f'<arg_key>{key}</arg_key>' + chr(10) + '<arg_value>')} {value} "
                    f"{lit('</arg_value>' + chr(10))}"
                )
                parts.append(f"({part})" + ("" if key in required else "?"))
            funcs.append(f"fn-{i}")
            g.add(f"fn-{i} ::= {lit(tool.name + chr(10))} {' '.join(parts)}")
        g.add(f"root ::= {repeat('tool-call', lit(chr(10)), parallel)}")
        g.add(f"tool-call ::= {lit(OPEN)} ({' | '.join(funcs)}) {lit(CLOSE)}")
        return g.text()


GLM = Glm()
