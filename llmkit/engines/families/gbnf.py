"""GBNF pieces the call grammars share: each function's arguments held to its
JSON schema (llama-cpp-python's schema converter), literals, and the fix-up
llama.cpp's grammar parser needs for characters past U+FFFF."""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from llmkit.core.tools import call_schema
from llmkit.core.types import Tool
from llmkit.errors import InvalidRequestError

# Whitespace around a call's JSON, bounded so a forced call cannot ramble on in newlines.
WS = r"[ \t\n]{0,4}"
# Calls in one reply when parallel calls are allowed: a small model may repeat a
# call until max_tokens; a bound keeps every reply ending in a closed call.
MAX_CALLS = 8

# A UTF-16 surrogate pair as llama-cpp-python's schema converter writes a character
# past U+FFFF (json.dumps escapes it so); llama.cpp's grammar reads each ``\u`` as a
# code point of its own, so the pair must become one ``\U`` escape. The lookbehind
# keeps an escaped backslash followed by "u" (an odd count of backslashes) as it is.
_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.I)


def astral(gbnf: str) -> str:
    """``gbnf`` with each escaped surrogate pair written as the one character it is."""

    def one(m: re.Match[str]) -> str:
        hi, lo = int(m[2], 16), int(m[3], 16)
        return f"{m[1]}\\U{0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00):08x}"

    return _PAIR.sub(one, gbnf)


def lit(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return json.dumps(text, ensure_ascii=False)


def chosen(tools: tuple[Tool, ...], name: str | None) -> list[Tool]:
    """The tools a call may be of: ``name``'s, or all."""
    picked = [t for t in tools if name is None or t.name == name]
    if not picked:
        raise InvalidRequestError(f"No tool is named {name!r}.", param="tool_choice")
    return picked


class Rules:
    """A grammar under construction: rules of our own, and the schema
    converter's rules for each JSON value they refer to."""

    def __init__(self) -> None:
        self._conv = SchemaConverter(
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        self._own: list[str] = []

    def schema(self, schema: dict[str, Any], name: str) -> str:
        """The rule (named after ``name``) of a JSON value held to ``schema``."""
        try:
            return self._conv.visit(self._conv.resolve_refs(schema, name), name)
        except Exception as e:  # the converter raises bare exceptions on schemas it can't do
            raise InvalidRequestError(
                f"A tool's parameters are not supported: {e}", param="tools"
            ) from e

    def args(self, tool: Tool, i: int) -> str:
        """The rule of ``tool``'s arguments object."""
        return self.schema(json.loads(tool.parameters_json), f"args-{i}")

    def call_object(self, tools: tuple[Tool, ...], name: str | None) -> str:
        """The rule of ``{"name": ..., "arguments": {...}}`` for one of the tools."""
        return self.schema(call_schema(tools, name), "call")

    def add(self, rule: str) -> None:
        self._own.append(rule)

    def text(self) -> str:
        return "\n".join([*self._own, astral(self._conv.format_grammar())])


def repeat(call: str, sep: str, parallel: bool, first: str = "") -> str:
    """``root``'s body: one ``call``, or with ``parallel`` up to MAX_CALLS
    separated by ``sep`` (a GBNF expression), the model free to stop after any.
    ``first``: what the first call may be instead (one a lazy grammar picks up
    at a later trigger than the call's start)."""
    more = f" ({sep} {call}){{0,{MAX_CALLS - 1}}}" if parallel else ""
    return f"{first or call}{more}"
