"""The families' parsers where llama.cpp's cases say nothing: the generic family
parses llmkit's own format, the syntaxes llama.cpp's tests do not
write (Llama 3 calls, Granite 3, Phi-4-mini), the shared rules (unclosed
thinking, ``max_calls``, a repeated call, a malformed call, a cut call), and
each family's thinking switch as its own template reads it."""

from __future__ import annotations

import json

import pytest

from llmkit.core.tools import join_calls
from llmkit.core.types import Tool
from llmkit.engines.families import detect
from llmkit.engines.families.base import Parsed
from llmkit.engines.families.table import BY_NAME
from tests.llama_chat_cases import llama_cpp_dir, render_prompt

TEMPLATES = llama_cpp_dir() / "models/templates"

# The table of the generic family (llmkit's own format, once ToolCallParser's):
# every case split everywhere.
CALL_ = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
CALL2_ = '<tool_call>{"name": "g", "arguments": {"y": "a<b"}}</tool_call>'
CASES = [
    ("plain text", "Hello there.\n", "Hello there.\n", []),
    ("one call", CALL_, "", [("f", {"x": 1})]),
    ("text before", "Let me look.\n" + CALL_, "Let me look.", [("f", {"x": 1})]),
    ("text after", CALL_ + "\n\nDone.", "Done.", [("f", {"x": 1})]),
    ("two calls", CALL_ + "\n" + CALL2_, "", [("f", {"x": 1}), ("g", {"y": "a<b"})]),
    ("unclosed at the end", '<tool_call>{"name": "f", "arguments": {}}', "", [("f", {})]),
    ("malformed json", "<tool_call>{not json</tool_call>", "{not json", []),
    ("cut off mid call", 'Hm.<tool_call>{"name": "f", "argu', "Hm.", []),
    ("a lone angle bracket", "a < b and <tool", "a < b and <tool", []),
    ("parameters spelling", '<tool_call>{"name": "f", "parameters": {"x": 2}}</tool_call>', "",
     [("f", {"x": 2})]),
    ("arguments as a string", '<tool_call>{"name": "f", "arguments": "{\\"x\\": 3}"}</tool_call>',
     "", [("f", {"x": 3})]),
]  # fmt: skip


def run(family: str, pieces: list[str], thinking: bool = False, max_calls: int | None = None):
    p = BY_NAME[family].parser(thinking=thinking, max_calls=max_calls)
    out = Parsed()
    for piece in pieces:
        out += p.push(piece)
    out += p.flush()
    calls = [(c.name, json.loads(c.arguments_json)) for c in join_calls(out.calls)]
    return out.content, out.reasoning, calls, p.done


def every_split(family: str, text: str, **kw) -> tuple:
    """The parse of ``text`` whole, the same at every split and a character at a time."""
    want = run(family, [text], **kw)
    for i in range(1, len(text)):
        assert run(family, [text[:i], text[i:]], **kw) == want, f"split at {i}"
    assert run(family, list(text), **kw) == want
    return want


@pytest.mark.parametrize(
    ("text", "content", "calls"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_generic_family_parses_as_tool_call_parser(text, content, calls):
    assert every_split("generic", text)[:3] == (content, "", calls)


SYNTAX_CASES = [
    # Llama 3: a bare object with "parameters", or after <|python_tag|>
    ("llama-3", '{"name": "f", "parameters": {"x": 1}}', "", [("f", {"x": 1})]),
    ("llama-3", '{"type": "function", "name": "f", "parameters": {"x": "a}b"}}', "",
     [("f", {"x": "a}b"})]),
    ("llama-3", '<|python_tag|>{"name": "f", "parameters": {}}', "", [("f", {})]),
    ("llama-3", '<|python_tag|>brave_search.call(query="llmkit")', "",
     [("brave_search", {"query": "llmkit"})]),
    ("llama-3", "<|python_tag|>print(1)", "", [("python", {"code": "print(1)"})]),
    ("llama-3", 'Here: {"name": "Bob", "age": 3}', 'Here: {"name": "Bob", "age": 3}', []),
    # Granite 3.x, Phi-4-mini: a JSON array after a marker
    ("granite-3", '<|tool_call|>[{"name": "f", "arguments": {"x": 1}}, {"name": "g", '
     '"arguments": {}}]', "", [("f", {"x": 1}), ("g", {})]),
    # Granite 3.3 with thinking wraps its answer in <response>
    ("granite-3.3", "<response>Hello.</response>", "Hello.", []),
    ("phi-4-mini", 'Sure. functools[{"name": "f", "arguments": {"x": 1}}]', "Sure.",
     [("f", {"x": 1})]),
    # a malformed call in auto mode is content, never lost
    ("mistral", "[TOOL_CALLS] is how I would call it.", "[TOOL_CALLS] is how I would call it.",
     []),
    ("mistral-nemo", "[TOOL_CALLS][not json]", "[TOOL_CALLS][not json]", []),
    ("kimi-k2", "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{oops}"
     "<|tool_call_end|>", "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{oops}"
     "<|tool_call_end|>", []),
    ("glm-4.5", "<tool_call>f\n<arg_key>x</arg_key>\n</tool_call>",
     "<tool_call>f\n<arg_key>x</arg_key>\n</tool_call>", []),
    ("deepseek-v3.1", "<｜tool▁call▁begin｜>f<｜tool▁sep｜>{x<｜tool▁call▁end｜>",
     "<｜tool▁call▁begin｜>f<｜tool▁sep｜>{x<｜tool▁call▁end｜>", []),
    ("gpt-oss", "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{x<|call|>",
     "{x", []),
    # a call cut off by max_tokens is dropped
    ("qwen3-coder", "Let me see.\n<tool_call>\n<function=f>\n<parameter=x>\n1",
     "Let me see.", []),
    ("deepseek-r1", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```js",
     "", []),
    ("mistral", '[TOOL_CALLS]f[ARGS]{"x": ', "", []),
    ("llama-3", '{"name": "f", "param', "", []),
    # the stop token ends a call whose closing marker never came
    ("mistral", '[TOOL_CALLS]f[ARGS]{"x": 1}', "", [("f", {"x": 1})]),
    ("gpt-oss", '<|channel|>commentary to=functions.f<|message|>{"x": 1}', "", [("f", {"x": 1})]),
]  # fmt: skip


@pytest.mark.parametrize(("family", "text", "content", "calls"), SYNTAX_CASES)
def test_syntax(family, text, content, calls):
    assert every_split(family, text)[:3] == (content, "", calls)


@pytest.mark.parametrize(
    ("family", "text"),
    [
        ("qwen3", "<think>I think and think"),
        ("deepseek-r1", "I think and think"),
        ("magistral", "[THINK]I think and think"),
        ("gpt-oss", "<|channel|>analysis<|message|>I think and think"),
    ],
)
def test_thinking_that_never_closes_is_reasoning(family, text):
    opened = not text.startswith(("<", "["))
    got = every_split(family, text, thinking=opened)
    assert got[:3] == ("", "I think and think", [])


def test_the_parser_says_when_it_is_inside_the_thinking():
    p = BY_NAME["qwen3"].parser(thinking=False, max_calls=None)
    p.push("<think>Hm")
    assert p.thinking
    p.push("m.</think>")
    assert not p.thinking
    assert (p.push("Yes.") + p.flush()).content == "Yes."


CALL = '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
CALL2 = '<tool_call>{"name": "g", "arguments": {}}</tool_call>'


def test_max_calls_and_a_repeated_call_end_the_reply():
    # parallel calls off: one call, the second is not handed on and the reply is done
    assert every_split("qwen3", CALL + CALL2, max_calls=1) == ("", "", [("f", {"x": 1})], True)
    # a call repeated word for word: done at the repeat
    assert every_split("qwen3", CALL + CALL + CALL2) == ("", "", [("f", {"x": 1})], True)
    assert every_split("qwen3", CALL + CALL2) == ("", "", [("f", {"x": 1}), ("g", {})], False)
    # the same for a syntax with several calls in one block
    many = '[TOOL_CALLS][{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]'
    assert every_split("mistral-nemo", many, max_calls=1) == ("", "", [("f", {})], True)


def test_calls_after_thinking_and_between_text():
    text = "<think>Which?</think>Let me look.\n" + CALL + "\nThen:\n" + CALL2 + "\nDone."
    assert every_split("qwen3", text) == (
        "Let me look.Then:Done.",
        "Which?",
        [("f", {"x": 1}), ("g", {})],
        False,
    )


# -- families' switches, as their own templates read them -------------------------


def prompt(template: str, think: bool | None = None, effort=None) -> str:
    text = (TEMPLATES / template).read_text()
    family = detect(text, {})
    return render_prompt(text, family.template_variables(think, effort))


@pytest.mark.parametrize(
    ("template", "think", "ends", "opens"),
    [
        ("Qwen-Qwen3-0.6B.jinja", False, "<think>\n\n</think>\n\n", False),
        ("Qwen-Qwen3-0.6B.jinja", True, "<|im_start|>assistant\n", False),
        ("Qwen-QwQ-32B.jinja", True, "<think>\n", True),
        ("Qwen-QwQ-32B.jinja", False, "<think>\n</think>", False),
        ("Qwen3.5-4B.jinja", False, "<think>\n\n</think>\n\n", False),
        ("Qwen3.5-4B.jinja", True, "<think>\n", True),
        ("deepseek-ai-DeepSeek-V3.1.jinja", True, "<｜Assistant｜><think>", True),
        ("deepseek-ai-DeepSeek-V3.1.jinja", False, "<think></think>", False),
        ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", True, "<think>\n", True),
        ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", None, "<think>\n", True),
        ("GLM-4.6.jinja", False, "<think></think>", False),
        ("GLM-4.7-Flash.jinja", True, "<|assistant|><think>", True),
        ("HuggingFaceTB-SmolLM3-3B.jinja", False, "<think>\n\n</think>\n", False),
    ],
)
def test_thinking_switch(template, think, ends, opens):
    text = prompt(template, think)
    assert text.endswith(ends)
    assert detect((TEMPLATES / template).read_text(), {}).opens_thinking(text) is opens


def test_effort_reaches_gpt_oss_and_granite_thinks_when_asked():
    assert "Reasoning: high" in prompt("openai-gpt-oss-120b.jinja", None, "high")
    assert "Reasoning: medium" in prompt("openai-gpt-oss-120b.jinja")
    assert "Reasoning: low" in prompt("openai-gpt-oss-120b.jinja", False)  # can't but think
    granite = "ibm-granite-granite-3.3-2B-Instruct.jinja"
    assert "thought process" in prompt(granite, True)
    assert "thought process" not in prompt(granite, False)


def test_family_facts():
    facts = {
        name: (f.thinks, f.thinking_optional, f.close_thinking)
        for name, f in BY_NAME.items()
        if name in ("generic", "qwen3", "gpt-oss", "magistral", "deepseek-r1", "kimi-k2")
    }
    assert facts == {
        "generic": (False, False, ""),
        "qwen3": (True, True, "\n</think>\n\n"),
        "gpt-oss": (True, False, "<|end|><|start|>assistant<|channel|>final<|message|>"),
        "magistral": (True, False, "[/THINK]"),
        "deepseek-r1": (True, False, "\n</think>\n\n"),
        "kimi-k2": (False, False, ""),
    }
    # the original R1-distill template has no switch; llama.cpp's copy reads one
    r1 = (TEMPLATES / "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja").read_text()
    assert not detect(r1, {}).thinking_optional
    assert detect(r1, {}).template_variables(False, None) == {}
    assert BY_NAME["generic"].call_triggers() == ("<tool_call>",)
    assert BY_NAME["qwen3-coder"].call_triggers() == ("<tool_call>", "<function=")


def test_close_thinking_ends_the_thinking():
    """What an engine writes when a budget is spent closes the thinking in each
    family's own parser: the answer after it is content."""
    for name, family in BY_NAME.items():
        if not family.thinks:
            continue
        p = family.parser(thinking=True, max_calls=None)
        out = p.push("Hmm, long thoughts") + p.push(family.close_thinking) + p.push("The answer.")
        out += p.flush()
        assert (out.reasoning, out.content) == ("Hmm, long thoughts", "The answer."), name


def test_bare_values_are_typed_by_the_schema_when_the_tools_are_known():
    schema = {
        "type": "object",
        "properties": {
            "phone": {"type": "string"},
            "count": {"type": "integer"},
            "note": {"type": ["string", "null"]},
            "price": {"type": "number"},
        },
    }
    tools = (Tool("f", "", json.dumps(schema)),)
    text = (
        "<tool_call>\n<function=f>\n<parameter=phone>\n0612\n</parameter>\n"
        "<parameter=count>\n7\n</parameter>\n<parameter=note>\nnull\n</parameter>\n"
        "<parameter=price>\n3\n</parameter>\n</function>\n</tool_call>"
    )
    typed = {"phone": "0612", "count": 7, "note": None, "price": 3}
    for family in ("qwen3-coder", "qwen3.5"):
        p = BY_NAME[family].parser(thinking=False, max_calls=None, tools=tools)
        out = p.push(text) + p.flush()
        assert [json.loads(c.arguments_json) for c in join_calls(out.calls)] == [typed]
    # without the tools, JSON where it parses ("0612" is not JSON: a leading zero)
    assert run("qwen3-coder", [text])[2] == [("f", typed)]
    glm = "<tool_call>f\n<arg_key>phone</arg_key>\n<arg_value>612</arg_value>\n</tool_call>"
    p = BY_NAME["glm-4.5"].parser(thinking=False, max_calls=None, tools=tools)
    out = p.push(glm) + p.flush()
    assert json.loads(join_calls(out.calls)[0].arguments_json) == {"phone": "612"}
    assert run("glm-4.5", [glm])[2] == [("f", {"phone": 612})]


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("mistral", "Mistral-Small-3.2-24B-Instruct-2506.jinja"),
        ("mistral-nemo", "mistralai-Mistral-Nemo-Instruct-2407.jinja"),
        ("magistral", "mistralai-Ministral-3-14B-Reasoning-2512.jinja"),
    ],
)
def test_mistral_call_ids_are_what_its_templates_take_so_a_tool_turn_renders(family, name):
    """Mistral's templates refuse a call id that is not 9 letters or digits: the
    families' parsers make ids of that form, and the calls they read go back
    through the template, with their results, and render (Anthropic's dialect
    keeps such an id as it is)."""
    from llmkit.api.anthropic.convert import tool_use_id
    from llmkit.core.types import Message, ToolCall
    from llmkit.engines.chat_template import render_chat

    text = (
        '[TOOL_CALLS][{"name": "f", "arguments": {"x": 1}}]'
        if family == "mistral-nemo"
        else ('[TOOL_CALLS]f[ARGS]{"x": 1}')
    )
    p = BY_NAME[family].parser(thinking=False, max_calls=None)
    out = p.push(text) + p.flush()
    [call] = join_calls(out.calls)
    assert len(call.id) == 9 and call.id.isalnum() and call.id.isascii()
    assert tool_use_id(call.id) == call.id and tool_use_id("call_1") == "toolu_1"
    turns = (
        Message("user", "x?"),
        Message("assistant", "", (ToolCall(call.id, "f", call.arguments_json),)),
        Message("tool", "1", tool_call_id=call.id),
    )
    tool = Tool("f", "", '{"type": "object", "properties": {"x": {"type": "integer"}}}')
    source = (TEMPLATES / name).read_text()
    prompt = render_chat(source, turns, tools=(tool,))
    assert (call.id in prompt) == ("tool_call.id" in source)  # where the template writes ids
