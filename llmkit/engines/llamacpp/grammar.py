"""The GBNF grammar a llama.cpp sequence is held to, if any: JSON output
(``response_format``), or tool calls.

Tool calls are written in the model family's own syntax, with the family's
grammar (``Family.call_grammar``), each call's JSON held to its function's
parameters, so a forced call always parses. With ``tool_choice`` "auto" the
grammar is lazy: the model writes freely until it opens a call (one of the
family's ``call_triggers``), and from there on it is held to the grammar, so an
auto call is as sound as a forced one (and nothing but calls may follow it).

A reply that thinks first (a reasoning model's) is held only after its
thinking: the grammar is bound when the decode thread sees the thinking end
(``Sampler.bind``), so the thinking is free and the answer, a call or the JSON,
is held. JSON and forced calls may then start after a little whitespace (what
models write after ``</think>``); a lazy grammar waits for its trigger from
there on, so a call the model only thinks about never triggers it.

One hazard comes with laziness: the token that completes a trigger was chosen
freely, and llama.cpp aborts the process if the rest of that token breaks the
grammar (``>.`` or ``></``). ``trigger_hazards`` finds such tokens in a
vocabulary once; a lazy sequence never samples them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from llmkit.core.types import GenerateRequest, SamplingParams
from llmkit.engines.families import Family
from llmkit.engines.families.gbnf import astral as _astral
from llmkit.engines.families.hermes import OPEN
from llmkit.engines.families.table import GENERIC
from llmkit.errors import InvalidRequestError

# The rule a grammar bound after the thinking starts from: a little whitespace
# (bounded, so it cannot ramble on in newlines), then the grammar's own root.
AFTER_THINKING = "llmkit-after-thinking"
_AFTER_RULE = f"{AFTER_THINKING} ::= [ \\t\\n]{{0,4}} root"


# What may follow ``<tool_call>`` in the token that completes it: room for the
# whitespace the grammar allows and the start of a call, and nothing else.
_SAFE_AFTER = re.compile(r'[ \t\n]{0,4}(\{ ?("(n(a(me?)?)?)?)?)?')
_NOTHING = re.compile("")


@dataclass(frozen=True)
class Grammar:
    text: str
    # Lazy: applies from the first of these texts on (the family's call triggers).
    triggers: tuple[str, ...] = ()
    root: str = "root"  # the rule it starts from

    @property
    def lazy(self) -> bool:
        return bool(self.triggers)

    @property
    def pattern(self) -> str:
        """The trigger pattern llama.cpp searches the text for (an ECMAScript regex:
        searched for anywhere, the grammar takes over at the group)."""
        return "(" + "|".join(_ecma_escape(t) for t in self.triggers) + ")"


def grammar_for(
    req: GenerateRequest, family: Family = GENERIC, *, after_thinking: bool = False
) -> Grammar | None:
    """The grammar ``req`` is held to, in ``family``'s call syntax; ``after_thinking``:
    it is bound once the reply's thinking has ended (JSON and forced calls may
    then start after a little whitespace)."""
    if not req.offers_tools:
        text = _response_grammar(req.sampling)
        return None if text is None else _bound(Grammar(text), after_thinking)
    if req.tool_choice == "auto" and req.sampling.response_format == "json":
        raise InvalidRequestError(
            "response_format JSON and tools with tool_choice 'auto' cannot be combined; "
            "use tool_choice 'required' (or a named function) or 'none'.",
            param="response_format",
        )
    text = tool_grammar(req, family)
    if req.tool_choice != "auto":
        return _bound(Grammar(text), after_thinking)
    triggers = tuple(t for t in family.call_triggers() if t)
    # A family with no text that opens a call: its auto calls are parsed, not held.
    return Grammar(text, triggers) if triggers else None


def tool_grammar(req: GenerateRequest, family: Family = GENERIC) -> str:
    """Calls of ``req.tools`` in ``family``'s syntax: exactly one with a named
    function or parallel calls off, else one or more (the model may stop after
    any)."""
    parallel = req.parallel_tool_calls and req.tool_name is None
    return _astral(family.call_grammar(req.tools, req.tool_name, parallel))


def _bound(grammar: Grammar, after_thinking: bool) -> Grammar:
    if not after_thinking:
        return grammar
    return Grammar(f"{grammar.text}\n{_AFTER_RULE}\n", grammar.triggers, AFTER_THINKING)


def _ecma_escape(text: str) -> str:
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)


def trigger_hazards(
    pieces: Iterable[tuple[int, str]], trigger: str = OPEN, safe: re.Pattern[str] | None = None
) -> list[int]:
    """The tokens (of ``(id, text)`` pairs) that could complete ``trigger``
    followed by text the call grammar may refuse: any text but what ``safe``
    matches (default: the generic family's whitespace and call opening after
    ``<tool_call>``; for another trigger, nothing at all)."""
    if safe is None:
        safe = _SAFE_AFTER if trigger == OPEN else _NOTHING
    # Most of a vocabulary neither starts with the end of the trigger nor holds it:
    # one regex match (in C) rules a token out, where the loop below would try every
    # end of the trigger in Python (the scan runs for every model loaded).
    ends = re.compile("|".join(re.escape(trigger[k:]) for k in range(len(trigger))))
    bad = []
    for token, text in pieces:
        if not ends.match(text) and trigger not in text:
            continue
        rests = [
            text[len(trigger) - k :] for k in range(len(trigger)) if text.startswith(trigger[k:])
        ]
        if trigger in text:
            rests.append(text.split(trigger, 1)[1])
        if any(not safe.fullmatch(r) for r in rests):
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
