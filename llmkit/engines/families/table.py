"""The family table: which family a model is (from its chat template and GGUF
metadata), and what each one's thinking and calls look like.

(First step: only the generic family, llmkit's ``<tool_call>`` syntax.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from llmkit.core.tools import call_schema
from llmkit.core.types import Effort, Tool
from llmkit.engines.families.base import Family, Parsed
from llmkit.engines.tool_syntax import CLOSE, OPEN, ToolCallParser
from llmkit.errors import InvalidRequestError

_WS = r"[ \t\n]{0,4}"
MAX_CALLS = 8


class _Hermes:
    """``ToolCallParser`` seen as a ``ReplyParser`` (no thinking)."""

    thinking = False

    def __init__(self, max_calls: int | None) -> None:
        self._p = ToolCallParser(max_calls=max_calls)

    @property
    def calls(self) -> int:
        return self._p.calls

    @property
    def done(self) -> bool:
        return self._p.done

    def push(self, text: str) -> Parsed:
        content, calls = self._p.push(text)
        return Parsed(content, "", tuple(calls))

    def flush(self) -> Parsed:
        content, calls = self._p.flush()
        return Parsed(content, "", tuple(calls))


class _Text:
    """No tools offered and no thinking: the reply is all content, as written."""

    thinking = False
    calls = 0
    done = False

    def push(self, text: str) -> Parsed:
        return Parsed(text)

    def flush(self) -> Parsed:
        return Parsed()


class Generic:
    name = "generic"
    thinks = False
    thinking_optional = False
    close_thinking = ""

    def template_variables(self, think: bool | None, effort: Effort | None) -> dict[str, Any]:
        return {}

    def opens_thinking(self, prompt: str) -> bool:
        return False

    def parser(self, *, thinking: bool, max_calls: int | None) -> _Hermes | _Text:
        return _Text() if max_calls == 0 else _Hermes(max_calls)

    def call_triggers(self) -> tuple[str, ...]:
        return (OPEN,)

    def call_grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        schema = call_schema(tools, name)
        conv = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        try:
            conv.visit(conv.resolve_refs(schema, "tools"), "call")
        except Exception as e:  # the converter raises bare exceptions on schemas it can't do
            raise InvalidRequestError(
                f"A tool's parameters are not supported: {e}", param="tools"
            ) from e
        more = f' ("\\n" tool-call){{0,{MAX_CALLS - 1}}}' if parallel else ""
        return "\n".join(
            [
                f"root ::= tool-call{more}",
                f"tool-call ::= {json.dumps(OPEN)} {_WS} call {_WS} {json.dumps(CLOSE)}",
                conv.format_grammar(),
            ]
        )


GENERIC: Family = Generic()


def detect(template: str, metadata: Mapping[str, str]) -> Family:
    """The family a model belongs to, from its chat template and GGUF metadata; the
    generic family (llmkit's ``<tool_call>`` syntax, no thinking) when none fits."""
    return GENERIC
