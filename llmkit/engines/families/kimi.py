"""Kimi-K2's calls, in a section; each call's id is ``functions.<name>:<n>``::

    <|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0
    <|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>

(without the line break). K2-Thinking may call from inside its thinking, and
may leave the end markers out: the next call or the reply's end closes a call.
"""

from __future__ import annotations

import re

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import Rules, chosen, lit, repeat
from llmkit.engines.families.jsontext import as_args, find
from llmkit.engines.families.stream import Call

BEGIN, END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL, ARG, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
_ID = re.compile(r"\s*(?:functions\.)?([^\s:<]+)(?::\d+)?\s*")


class Kimi:
    triggers = (CALL,)
    layout = (BEGIN, END)
    opens = (BEGIN,)  # what a model writes first, before its calls

    def end(self, block: str, memo: dict) -> int | None:
        at = find(block, CALL_END, memo)
        if at >= 0:
            return at + len(CALL_END)
        nxt = [i for i in (find(block, CALL, memo, len(CALL)), find(block, END, memo)) if i >= 0]
        return min(nxt) if nxt else None

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        body = block[len(CALL) :].removesuffix(CALL_END)
        head, sep, args = body.partition(ARG)
        m = _ID.fullmatch(head)
        value = as_args(args.strip() or "{}") if sep else None
        return None if m is None or value is None else [(m[1], value)]

    def text(self, block: str) -> str:
        return block

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        funcs = []
        for i, tool in enumerate(chosen(tools, name)):
            funcs.append(f"fn-{i}")
            g.add(
                f"fn-{i} ::= {lit('functions.' + tool.name + ':')} [0-9]{{1,2}} "
                f"{lit(ARG)} {g.args(tool, i)}"
            )
        # the section's begin is optional: a lazy grammar may start at a call
        g.add(f"root ::= {lit(BEGIN)}? {repeat('tool-call', '', parallel)} {lit(END)}")
        g.add(f"tool-call ::= {lit(CALL)} ({' | '.join(funcs)}) {lit(CALL_END)}")
        return g.text()


KIMI = Kimi()
