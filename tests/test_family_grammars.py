"""Each family's forced-call grammar, held to llama.cpp's grammar sampler (the
bundled model's vocabulary): it parses, it takes a call written in the family's
own syntax with arguments that fit the schema, it refuses the same call with
arguments that do not fit (or of a function not offered), and what it takes
parses back through the family's parser into the call."""

from __future__ import annotations

import json
from functools import partial

import pytest

from llmkit.core.tools import join_calls
from llmkit.core.types import Tool
from llmkit.engines.families.base import Parsed
from llmkit.engines.families.table import BY_NAME
from tests.gbnf_check import GrammarCheck

dumps = partial(json.dumps, ensure_ascii=False)  # as a model writes JSON
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
TOOLS = (
    Tool("get_weather", "Weather", dumps(SCHEMA)),
    Tool("get_time", "Time", dumps({"type": "object", "properties": {}})),
)
ARGS = {"city": "Paris", "days": 3}
BAD = {"city": "Paris", "days": "three"}  # days must be an integer

HERMES = '<tool_call>\n{{"name": "{n}", "arguments": {a}}}\n</tool_call>'
XML = "<tool_call>\n<function={n}>\n{p}</function>\n</tool_call>"
DS = "<｜tool▁call▁begin｜>{t}<｜tool▁call▁end｜>"


def xml(name: str, args: dict) -> str:
    params = "".join(f"<parameter={k}>\n{_bare(v)}\n</parameter>\n" for k, v in args.items())
    return XML.format(n=name, p=params)


def glm(name: str, args: dict) -> str:
    pairs = "".join(
        f"<arg_key>{k}</arg_key>\n<arg_value>{_bare(v)}</arg_value>\n" for k, v in args.items()
    )
    return f"<tool_call>{name}\n{pairs}</tool_call>"


def _bare(v: object) -> str:
    return v if isinstance(v, str) else dumps(v)


def obj(name: str, args: dict, key: str = "arguments") -> str:
    return dumps({"name": name, key: args})


# family -> (one call, how calls are joined, what opens and closes a run of them)
SYNTAX = {
    "hermes": (lambda n, a: HERMES.format(n=n, a=dumps(a)), "\n", ("", "")),
    "qwen3-coder": (xml, "\n", ("", "")),
    "glm-4.5": (glm, "\n", ("", "")),
    "mistral": (lambda n, a: f"[TOOL_CALLS]{n}[ARGS]{dumps(a)}", "", ("", "")),
    "mistral-nemo": (obj, ", ", ("[TOOL_CALLS][", "]")),
    "granite-3": (obj, ", ", ("<|tool_call|>[", "]")),
    "phi-4-mini": (obj, ", ", ("functools[", "]")),
    "llama-3": (
        lambda n, a: dumps({"type": "function", "name": n, "parameters": a}),
        "\n",
        ("", ""),
    ),
    "kimi-k2": (
        lambda n, a: (
            "<|tool_call_begin|>functions."
            + f"{n}:0<|tool_call_argument_begin|>{dumps(a)}<|tool_call_end|>"
        ),
        "",
        ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
    ),
    "deepseek-r1": (
        lambda n, a: DS.format(t=f"function<｜tool▁sep｜>{n}\n```json\n{dumps(a)}\n```"),
        "\n",
        ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    ),
    "deepseek-v3.1": (
        lambda n, a: DS.format(t=f"{n}<｜tool▁sep｜>{dumps(a)}"),
        "\n",
        ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    ),
    "gpt-oss": (
        lambda n, a: (
            f"<|channel|>commentary to=functions.{n} <|constrain|>json<|message|>"
            + f"{dumps(a)}<|call|>"
        ),
        "<|start|>assistant",
        ("", ""),
    ),
}
SAME = {
    "generic": "hermes", "qwen3": "hermes", "qwq": "hermes", "smollm3": "hermes",
    "granite-4": "hermes", "qwen3.5": "qwen3-coder", "magistral": "mistral",
    "granite-3.3": "granite-3", "firefunction-v2": "phi-4-mini",
    "kimi-k2-thinking": "kimi-k2", "deepseek-v3": "deepseek-r1",
}  # fmt: skip


def test_every_family_has_a_syntax_here():
    assert set(BY_NAME) == set(SYNTAX) | set(SAME)


def write(family: str, *calls: tuple[str, dict]) -> str:
    one, sep, (start, end) = SYNTAX[SAME.get(family, family)]
    return start + sep.join(one(n, a) for n, a in calls) + end


@pytest.fixture(scope="module")
def check(bundled_path: str) -> GrammarCheck:
    return GrammarCheck(bundled_path)


def parse_back(family: str, text: str) -> list[tuple[str, dict]]:
    p = BY_NAME[family].parser(thinking=False, max_calls=None)
    out = p.push(text) + p.flush()
    assert isinstance(out, Parsed) and out.content == ""
    return [(c.name, json.loads(c.arguments_json)) for c in join_calls(out.calls)]


@pytest.mark.parametrize("family", sorted(BY_NAME))
def test_forced_call(family, check):
    fam = BY_NAME[family]
    grammar = fam.call_grammar(TOOLS, None, False)
    good = write(family, ("get_weather", ARGS))
    assert check.accepts(grammar, good), good
    assert parse_back(family, good) == [("get_weather", ARGS)]
    assert check.accepts(grammar, write(family, ("get_time", {})))
    assert check.accepts(grammar, write(family, ("get_weather", {"city": "Paris"})))
    assert not check.accepts(grammar, write(family, ("get_weather", BAD)))
    assert not check.accepts(grammar, write(family, ("get_weather", {"days": 3})))  # city
    assert not check.accepts(grammar, write(family, ("get_news", {})))
    # only one call without parallel calls
    two = write(family, ("get_weather", ARGS), ("get_time", {}))
    assert not check.accepts(grammar, two)


@pytest.mark.parametrize("family", sorted(BY_NAME))
def test_named_and_parallel_calls(family, check):
    fam = BY_NAME[family]
    named = fam.call_grammar(TOOLS, "get_time", False)
    assert check.accepts(named, write(family, ("get_time", {})))
    assert not check.accepts(named, write(family, ("get_weather", ARGS)))
    parallel = fam.call_grammar(TOOLS, None, True)
    two = write(family, ("get_weather", ARGS), ("get_time", {}))
    assert check.accepts(parallel, two), two
    assert check.accepts(parallel, write(family, ("get_time", {})))  # may stop after any
    assert parse_back(family, two) == [("get_weather", ARGS), ("get_time", {})]


@pytest.mark.parametrize("family", sorted(BY_NAME))
def test_a_lazy_grammar_takes_over_at_each_trigger(family, check):
    """Where a free reply opens a call (a trigger), the rest of the call is what
    the grammar takes from there."""
    fam = BY_NAME[family]
    grammar = fam.call_grammar(TOOLS, None, True)
    texts = [write(family, ("get_weather", ARGS))]
    if family == "llama-3":
        texts.append(obj("get_weather", ARGS, "parameters"))
    if SAME.get(family, family) == "qwen3-coder":
        texts.append(texts[0].removeprefix("<tool_call>\n"))
    seen = set()
    for text in texts:
        for trigger in fam.call_triggers():
            if trigger in text:
                seen.add(trigger)
                rest = text[text.index(trigger) :]
                assert check.accepts(grammar, rest), rest
    assert seen == set(fam.call_triggers()) - {"<|python_tag|>"}
    if family == "llama-3":
        assert check.accepts(grammar, "<|python_tag|>" + texts[0])


def test_characters_past_the_basic_plane(check):
    """A schema's emoji (written by the converter as a surrogate pair) is one
    character to llama.cpp's grammar."""
    schema = {"type": "object", "properties": {"mood": {"const": "😀"}}, "required": ["mood"]}
    tools = (Tool("feel", "", dumps(schema)),)
    for family in ("hermes", "mistral", "gpt-oss"):
        grammar = BY_NAME[family].call_grammar(tools, None, False)
        assert check.accepts(grammar, write(family, ("feel", {"mood": "😀"}))), family
