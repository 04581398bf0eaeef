"""Mistral's calls. Newer models (Devstral, Magistral, Mistral Small 3.2,
Ministral 3) write each call as ``[TOOL_CALLS]name[ARGS]{...}`` (a
``[CALL_ID]id`` may come before ``[ARGS]``); older ones (Nemo, 7B v0.3) one JSON
array: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``.
"""

from __future__ import annotations

import re
import secrets
import string

from llmkit.core.types import Tool
from llmkit.engines.families.gbnf import WS, Rules, chosen, lit, repeat
from llmkit.engines.families.jsontext import json_end, load, named_call
from llmkit.engines.families.stream import Call

OPEN, ARGS = "[TOOL_CALLS]", "[ARGS]"
_HEAD = re.compile(r"\s*([\w.\-]+)(?:\[CALL_ID\][\w\-]*)?")
_NAME = re.compile(r"\s*[\w.\-]*")
_ID = re.compile(r"[\w\-]*")
_ID_CHARS = string.ascii_letters + string.digits


def new_call_id() -> str:
    """A call id as Mistral's templates take them: 9 letters or digits (they
    refuse any other, so a tool turn sent back would not render)."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(9))


class Mistral:
    triggers = (OPEN,)
    layout = ()
    new_id = staticmethod(new_call_id)

    def __init__(self, array: bool) -> None:
        self._array = array  # the grammar writes the older JSON-array form

    def end(self, block: str, memo: dict) -> int | None:
        at = len(OPEN)
        head = block[at:].lstrip()
        if head.startswith("["):  # the older form: one JSON array
            return json_end(block, at, memo)
        args = block.find(ARGS, at)
        if args < 0:
            # prose that merely mentions [TOOL_CALLS] ends here (and is content)
            return None if _may_be_head(block[at:]) else len(block)
        if not _HEAD.fullmatch(block, at, args):
            return args
        return json_end(block, args + len(ARGS), memo)

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        body = block[len(OPEN) :]
        args = body.find(ARGS)
        if args < 0:
            items = load(body)
            calls = [named_call(c) for c in items] if isinstance(items, list) else [None]
            return None if not calls or None in calls else calls  # type: ignore[return-value]
        head = _HEAD.fullmatch(body[:args])
        value = load(body[args + len(ARGS) :])
        if head is None or not isinstance(value, dict):
            return None
        return [(head[1], value)]

    def text(self, block: str) -> str:
        return block

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        if self._array:
            call = g.call_object(tools, name)
            g.add(f'root ::= {lit(OPEN + "[")} {WS} {repeat(call, lit(", "), parallel)} {WS} "]"')
            return g.text()
        funcs = []
        for i, tool in enumerate(chosen(tools, name)):
            funcs.append(f"fn-{i}")
            g.add(f"fn-{i} ::= {lit(tool.name + ARGS)} {g.args(tool, i)}")
        g.add(f"root ::= {repeat('tool-call', '', parallel)}")
        g.add(f"tool-call ::= {lit(OPEN)} ({' | '.join(funcs)})")
        return g.text()


def _may_be_head(head: str) -> bool:
    """``head`` (what follows [TOOL_CALLS], no [ARGS] yet) may still become
    ``name[CALL_ID]id[ARGS]``."""
    rest = head[_NAME.match(head).end() :]  # type: ignore[union-attr]
    if rest.startswith("[CALL_ID]"):
        rest = rest[9:]
        rest = rest[_ID.match(rest).end() :]  # type: ignore[union-attr]
        return ARGS.startswith(rest)
    return ARGS.startswith(rest) or "[CALL_ID]".startswith(rest)


MISTRAL = Mistral(array=False)
MISTRAL_ARRAY = Mistral(array=True)
