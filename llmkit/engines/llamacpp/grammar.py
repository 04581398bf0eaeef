"""The GBNF grammar a llama.cpp sequence is held to, if any: JSON output
(``response_format``), or tool calls.

Tool calls are written in the one syntax ``tool_syntax`` parses, each call's
JSON constrained by the call schema (``core.tools.call_schema``), so a forced
call always parses and matches its function's parameters. With ``tool_choice``
"auto" the grammar is lazy: the model writes freely until it opens a
``<tool_call>``, and from there on it is held to the grammar, so an auto call is
as sound as a forced one (and nothing but calls may follow it).

One hazard comes with laziness: the token that completes ``<tool_call>`` was
chosen freely, and llama.cpp aborts the process if the rest of that token breaks
the grammar (``>.`` or ``></``). ``trigger_hazards`` finds such tokens in a
vocabulary once; a lazy sequence never samples them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from llama_cpp.llama_grammar import JSON_GBNF, SchemaConverter, json_schema_to_gbnf

from llmkit.core.tools import call_schema
from llmkit.core.types import GenerateRequest, SamplingParams
from llmkit.engines.families.gbnf import astral as _astral
from llmkit.engines.tool_syntax import CLOSE, OPEN
from llmkit.errors import InvalidRequestError

# Whitespace around a call's JSON, bounded so a forced call cannot ramble on in newlines.
_WS = r"[ \t\n]{0,4}"
# Matched against all the text so far; the grammar takes over at the group.
TRIGGER = r"[\s\S]*?(" + OPEN + r")[\s\S]*"
# Calls in one reply when parallel calls are allowed: a small model may repeat a
# call until max_tokens; a bound keeps every reply ending in a closed call.
MAX_CALLS = 8


# What may follow ``<tool_call>`` in the token that completes it: room for the
# whitespace the grammar allows and the start of a call, and nothing else.
_SAFE_AFTER = re.compile(r'[ \t\n]{0,4}(\{ ?("(n(a(me?)?)?)?)?)?')


@dataclass(frozen=True)
class Grammar:
    text: str
    lazy: bool = False  # applies from the first TRIGGER match on


def grammar_for(req: GenerateRequest) -> Grammar | None:
    if not req.offers_tools:
        text = _response_grammar(req.sampling)
        return None if text is None else Grammar(text)
    if req.tool_choice == "auto" and req.sampling.response_format == "json":
        raise InvalidRequestError(
            "response_format JSON and tools with tool_choice 'auto' cannot be combined; "
            "use tool_choice 'required' (or a named function) or 'none'.",
            param="response_format",
        )
    return Grammar(tool_grammar(req), lazy=req.tool_choice == "auto")


def tool_grammar(req: GenerateRequest) -> str:
    """Calls of ``req.tools`` (one, or one to MAX_CALLS with parallel calls), each
    ``<tool_call>`` JSON ``</tool_call>``."""
    schema = call_schema(req.tools, req.tool_name)
    conv = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        conv.visit(conv.resolve_refs(schema, "tools"), "call")
    except Exception as e:  # the converter raises bare exceptions on schemas it can't do
        raise InvalidRequestError(
            f"A tool's parameters are not supported: {e}", param="tools"
        ) from e
    more = f' ("\\n" tool-call){{0,{MAX_CALLS - 1}}}' if req.parallel_tool_calls else ""
    rules = [
        f"root ::= tool-call{more}",
        f"tool-call ::= {json.dumps(OPEN)} {_WS} call {_WS} {json.dumps(CLOSE)}",
        _astral(conv.format_grammar()),
    ]
    return "\n".join(rules)


def trigger_hazards(pieces: Iterable[tuple[int, str]]) -> list[int]:
    """The tokens (of ``(id, text)`` pairs) that could complete ``<tool_call>``
    followed by text the call grammar refuses."""
    bad = []
    for token, text in pieces:
        rests = [text[len(OPEN) - k :] for k in range(len(OPEN)) if text.startswith(OPEN[k:])]
        if OPEN in text:
            rests.append(text.split(OPEN, 1)[1])
        if any(not _SAFE_AFTER.fullmatch(r) for r in rests):
            bad.append(token)
    return bad


def _response_grammar(params: SamplingParams) -> str | None:
    """The grammar of JSON output, if the request asks for it."""
    if params.response_format != "json":
        return None
    if params.json_schema is None:
        return JSON_GBNF
    try:
        return _astral(json_schema_to_gbnf(params.json_schema))
    except Exception as e:  # the converter raises bare exceptions on schemas it can't do
        raise InvalidRequestError(
            f"The JSON schema is not supported: {e}", param="response_format"
        ) from e
