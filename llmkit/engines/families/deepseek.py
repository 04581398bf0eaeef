"""DeepSeek's calls, in a section. R1 and its distills (and V3) write the type,
the name and the arguments in a fenced JSON block; V3.1 and later the name and
the arguments alone (V3.1 without the line break)::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
    ```json
    {"city": "Paris"}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}
    <｜tool▁call▁end｜><｜tool▁calls▁end｜>
"""

from __future__ import annotations

import re

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import Rules, chosen, lit, repeat
from llmkit.engines.families.jsontext import as_args, find
from llmkit.engines.families.stream import Call

BEGIN, END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL, SEP, CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"
_FENCED = re.compile(r"\s*([^\s`]+)\s*(?:```(?:json)?\s*(.*?)\s*```|(\{.*\}))\s*", re.S)


class DeepSeek:
    triggers = (CALL,)
    layout = (BEGIN, END)
    opens = (BEGIN,)  # what a model writes first, before its calls

    def __init__(self, typed: bool) -> None:
        self._typed = typed  # the grammar writes R1's "function<sep>name ```json" form

    def end(self, block: str, memo: dict) -> int | None:
        at = find(block, CALL_END, memo)
        return None if at < 0 else at + len(CALL_END)

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        if not closed:
            return None
        head, sep, rest = block[len(CALL) : -len(CALL_END)].partition(SEP)
        if not sep:
            return None
        if head.strip() == "function":  # R1: the name, then the arguments fenced
            m = _FENCED.fullmatch(rest)
            if m is None:
                return None
            name, args = m[1], as_args(m[2] if m[2] is not None else m[3])
        else:
            name, args = head.strip(), as_args(rest.strip().removeprefix("```json").strip("`\n "))
        return None if args is None or not name else [(name, args)]

    def text(self, block: str) -> str:
        return block

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        funcs = []
        for i, tool in enumerate(chosen(tools, name)):
            funcs.append(f"fn-{i}")
            if self._typed:
                head = lit(f"function{SEP}{tool.name}\n```json\n")
                g.add(f"fn-{i} ::= {head} {g.args(tool, i)} {lit(chr(10) + '```')}")
            else:
                g.add(f"fn-{i} ::= {lit(tool.name + SEP)} {g.args(tool, i)}")
        # the section's begin is optional: a lazy grammar may start at a call
        calls = repeat("tool-call", lit(chr(10)), parallel)
        g.add(f"root ::= {lit(BEGIN)}? {calls} {lit(END)}")
        g.add(f"tool-call ::= {lit(CALL)} ({' | '.join(funcs)}) {lit(CALL_END)}")
        return g.text()


DEEPSEEK_R1 = DeepSeek(typed=True)
DEEPSEEK_V31 = DeepSeek(typed=False)
