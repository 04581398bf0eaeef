"""Table tests of the engine-neutral tool-calling parts: the call parser over
text split at every point, the generic prompt format, the tool checks and the
call schema, and the llama.cpp call grammar. No server."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import count

import pytest

from llmkit.api.tools import check_choice, tool_from_dict
from llmkit.core.tools import call_schema, join_calls
from llmkit.core.types import Message, Tool, ToolCall, ToolCallDelta
from llmkit.engines.chat_template import CHATML, render_chat
from llmkit.engines.families import detect
from llmkit.engines.families.base import Parsed, ReplyParser
from llmkit.engines.families.stream import Stream
from llmkit.engines.llamacpp.grammar import tool_grammar, trigger_hazards
from llmkit.engines.tool_prompt import template_knows_tools, template_messages
from llmkit.errors import InvalidRequestError

CALL = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
CALL2 = '<tool_call>{"name": "g", "arguments": {"y": "a<b"}}</tool_call>'


def parser(max_calls: int | None = None) -> ReplyParser:
    """The generic family's parser (a template no row knows: llmkit's format),
    its call ids numbered. Its table of cases split everywhere is
    test_family_parsers' ``test_generic_family_parses_as_tool_call_parser``."""
    ids = count()
    generic = detect("", {})
    return Stream(generic.syntax, max_calls=max_calls, new_id=lambda: f"call_{next(ids)}")


def run_split(text: str, cut: list[int], p: ReplyParser | None = None):
    """Feed ``text`` in pieces cut at ``cut``; the content and the calls it makes."""
    p = p or parser()
    out = Parsed()
    for a, b in zip([0, *cut], [*cut, len(text)], strict=True):
        out += p.push(text[a:b])
    out += p.flush()
    return out.content, [(c.name, json.loads(c.arguments_json)) for c in join_calls(out.calls)]


def test_markup_never_reaches_content_at_any_two_splits():
    text = "Sure.\n" + CALL + "\n" + CALL2 + "\nBye"
    for i in range(0, len(text), 3):
        for j in range(i, len(text), 5):
            content, calls = run_split(text, [i, j])
            assert "<tool" not in content and "</tool" not in content
            assert content == "Sure.Bye" and len(calls) == 2


def test_call_deltas_give_id_and_name_first_then_arguments():
    assert list(parser().push(CALL).calls) == [
        ToolCallDelta(0, id="call_0", name="f"),
        ToolCallDelta(0, arguments='{"x": 1}'),
    ]


def test_a_repeated_call_or_one_past_the_limit_ends_the_reply():
    p = parser()
    p.push(CALL + CALL)
    assert p.calls == 1 and p.done
    one = parser(max_calls=1)
    one.push(CALL + CALL2)
    assert one.calls == 1 and one.done


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"name": "f", "arguments": {}}', [("f", {})]),
        ('{"name": 1, "arguments": {}}', None),
        ('{"name": "f", "arguments": [1]}', None),
        ("[]", None),
        ('{"name": "f"}', [("f", {})]),
    ],
)
def test_one_calls_json(body, expected):
    """A call's body is a name and an object of arguments; anything else is the
    content it was (never lost)."""
    content, calls = run_split(f"<tool_call>{body}</tool_call>", [])
    assert (content, calls) == (("", expected) if expected else (body, []))


# -- the generic prompt format --------------------------------------------------

WEATHER = Tool("get_weather", "Weather in a city", '{"type": "object", "properties": {}}')


def test_generic_format_describes_tools_and_renders_tool_turns():
    history = (
        Message("system", "Be brief."),
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Oslo"}'),)),
        Message("tool", "rain", tool_call_id="c1"),
        Message("tool", "8C", tool_call_id="c2"),
    )
    out = template_messages(history, (WEATHER,), native=False)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be brief.\n\nYou can call functions.")
    assert '"name": "get_weather"' in out[0]["content"]
    assert out[2]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    )
    assert out[3]["content"] == (
        "<tool_response>\nrain\n</tool_response>\n<tool_response>\n8C\n</tool_response>"
    )


def test_no_tools_no_word_about_them():
    text = render_chat(CHATML, (Message("user", "hi"),))
    assert "tool" not in text


def test_native_templates_get_tools_and_calls_as_hugging_face_passes_them():
    template = (
        "{% for t in tools %}[{{ t.function.name }}]{% endfor %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }}"
        "{% for c in m.tool_calls or [] %}call {{ c.function.name }} "
        "{{ c.function.arguments.city }}"
        "{% endfor %};{% endfor %}"
    )
    assert template_knows_tools(template)
    msgs = (
        Message("assistant", "", tool_calls=(ToolCall("c", "get_weather", '{"city": "Rome"}'),)),
    )
    assert (
        render_chat(template, msgs, tools=(WEATHER,))
        == "[get_weather]assistant:call get_weather Rome;"
    )


# -- tool checks and the call schema ------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "param"),
    [
        ({"name": "bad name"}, "tools.0.function.name"),
        ({"name": "f", "parameters": {"type": "objekt"}}, "tools.0.function.parameters"),
        ({"name": "f", "parameters": {"type": "string"}}, "tools.0.function.parameters"),
        ({"name": "f", "parameters": {"properties": []}}, "tools.0.function.parameters"),
        ({"name": "f", "parameters": {"required": "x"}}, "tools.0.function.parameters"),
        (None, "tools.0.function"),
    ],
)
def test_malformed_tools_are_refused_naming_the_field(fn, param):
    with pytest.raises(InvalidRequestError) as e:
        tool_from_dict(fn, "tools.0.function")
    assert e.value.param == param


def test_a_choice_must_name_an_offered_tool():
    with pytest.raises(InvalidRequestError) as e:
        check_choice((WEATHER,), "required", "nope", "tool_choice")
    assert e.value.param == "tool_choice" and "get_weather" in e.value.message
    with pytest.raises(InvalidRequestError):
        check_choice((), "required", None, "tool_choice")


def test_call_schema_puts_the_name_first_and_narrows_to_a_named_tool():
    other = Tool("f", parameters_json='{"type": "object", "properties": {"a": {"type": "string"}}}')
    both = call_schema((WEATHER, other))
    assert [o["properties"]["name"]["const"] for o in both["anyOf"]] == ["get_weather", "f"]
    assert list(both["anyOf"][1]["properties"]) == ["name", "arguments"]
    assert call_schema((WEATHER, other), "f")["properties"]["arguments"]["properties"] == {
        "a": {"type": "string"}
    }


def test_join_calls():
    deltas = [
        ToolCallDelta(1, id="b", name="g"),
        ToolCallDelta(0, id="a", name="f"),
        ToolCallDelta(0, arguments='{"x":'),
        ToolCallDelta(0, arguments=" 1}"),
    ]
    assert join_calls(deltas) == [ToolCall("a", "f", '{"x": 1}'), ToolCall("b", "g", "{}")]


# -- the llama.cpp grammar ------------------------------------------------------------


def test_the_call_grammar_has_one_or_several_tagged_calls():
    from llmkit.core.types import GenerateRequest

    req = GenerateRequest(
        messages=(Message("user", "x"),), tools=(WEATHER,), tool_choice="required"
    )
    many = tool_grammar(req)
    assert many.startswith('root ::= tool-call ("\\n" tool-call){0,7}')
    assert '"<tool_call>"' in many and '"</tool_call>"' in many and "call ::=" in many
    from dataclasses import replace

    assert tool_grammar(replace(req, parallel_tool_calls=False)).startswith("root ::= tool-call\n")


def test_trigger_hazards_are_tokens_that_would_break_the_grammar_after_the_tag():
    pieces = [(0, ">"), (1, ">\n"), (2, '>{"'), (3, ">."), (4, "></"), (5, "hello"), (6, "l>x")]
    assert trigger_hazards(pieces) == [3, 4, 6]


def test_another_family_trigger_is_safe_only_when_its_token_ends_with_it():
    pieces = [(0, "]"), (1, "]\n"), (2, "S]"), (3, "[TOOL_CALLS]"), (4, "[TOOL_CALLS]x"), (5, "x")]
    assert trigger_hazards(pieces, "[TOOL_CALLS]") == [1, 4]


def test_lazy_patterns_escape_the_triggers_and_a_grammar_after_thinking_allows_a_little_space():
    from llmkit.core.types import GenerateRequest, SamplingParams
    from llmkit.engines.llamacpp.grammar import AFTER_THINKING, Grammar, grammar_for

    assert Grammar("", ("[TOOL_CALLS]", "<tool_call>")).pattern == r"(\[TOOL_CALLS\]|<tool_call>)"
    req = GenerateRequest(
        messages=(Message("user", "x"),), sampling=SamplingParams(response_format="json")
    )
    held = grammar_for(req, after_thinking=True)
    assert held.root == AFTER_THINKING and not held.lazy
    assert f"{AFTER_THINKING} ::= [ \\t\\n]{{0,4}} root" in held.text
    assert grammar_for(req).root == "root"
    auto = grammar_for(
        replace(req, sampling=SamplingParams(), tools=(WEATHER,)), after_thinking=True
    )
    assert auto.lazy and auto.root == "root" and auto.triggers == ("<tool_call>",)
