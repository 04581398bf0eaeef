"""The prompt llmkit renders equals Hugging Face's, for every chat template
llama.cpp ships (``models/templates`` of the pinned sdist, which
``scripts/bootstrap.sh`` keeps in ``.venv/llama.cpp``).

The reference is transformers' own public path: ``apply_chat_template(messages,
chat_template=TEMPLATE, tools=..., tokenize=False, add_generation_prompt=...,
**variables)`` on a ``PreTrainedTokenizerFast`` built in memory with only a BOS and
an EOS token (the template is passed in, so no model's tokenizer is needed; its
special tokens reach the template as ``bos_token`` / ``eos_token``, as llmkit
passes them). Each conversation goes to transformers as the dicts a Hugging Face
user writes, and to llmkit as the core ``Message``s a dialect makes of the same
request; the two texts must be equal, character for character. Where
transformers raises on a conversation, llmkit must refuse it too
(``InvalidRequestError``, the caller's 400). ``strftime_now`` reads one pinned
clock on both sides.

Templates that do not know tools get llmkit's generic tool format instead
(``tool_prompt``), by design: for those, the tool conversations are held to
transformers rendering the generic messages.
"""

from __future__ import annotations

import difflib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

import llmkit.engines.chat_template as chat_template_module
from llmkit.core.types import Message, Tool, ToolCall
from llmkit.engines.chat_template import render_chat
from llmkit.engines.tool_prompt import template_knows_tools, template_messages
from llmkit.errors import InvalidRequestError

# The .venv running the tests holds llama.cpp's reference data (bootstrap puts it there).
TEMPLATE_DIR = Path(sys.prefix) / "llama.cpp" / "models" / "templates"
# A missing reference must fail (its one case reads a file that is not there), never skip.
NAMES = sorted(p.stem for p in TEMPLATE_DIR.glob("*.jinja")) or ["<llama.cpp templates missing>"]

BOS, EOS = "<s>", "</s>"

# Templates transformers cannot render with any conversation, and why.
HF_CANNOT_RENDER = {
    "fireworks-ai-llama-3-firefunction-v2": "reads a `functions` variable transformers never sets",
}

# Templates that do not know tools (no ``tools`` variable or no ``tool_calls``
# turns): llmkit writes tools and tool turns into their messages in its generic
# format rather than hand them ``tools`` they would drop.
GENERIC = {
    "HuggingFaceTB-SmolLM3-3B": "reads xml_tools/python_tools, not tools",
    "LFM2-8B-A1B": "reads tools but renders no tool_calls",
    "LFM2.5-Instruct": "reads tools but renders no tool_calls",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": "renders tool_calls but never lists tools",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "renders tool_calls but never lists tools",
    "deepseek-ai-DeepSeek-V3.1": "renders tool_calls but never lists tools",
    "fireworks-ai-llama-3-firefunction-v2": "reads `functions`, not tools",
    "google-gemma-2-2b-it": "no tools",
    "ibm-granite-granite-3.3-2B-Instruct": "reads tools but renders no tool_calls",
    "llama-cpp-rwkv-world": "no tools",
    "microsoft-Phi-3.5-mini-instruct": "no tools",
}

WEATHER = {
    "type": "function",
    "function": {
        # JSON that Jinja's own tojson would HTML-escape, and text it would \u-escape
        "name": "get_weather",
        "description": "Weather in a city, <now> & 'later'",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "Zürich or 東京"}},
            "required": ["city"],
        },
    },
}
# Mistral's templates take only nine-character alphanumeric call ids.
CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "id": "a1b2c3d4e",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Zürich"}},
        }
    ],
}
RESULT = {"role": "tool", "content": "12°C, <rain>", "tool_call_id": "a1b2c3d4e"}
# Two calls in one turn (nested, non-ASCII arguments), answered in a row.
TWO_CALLS = {
    "role": "assistant",
    "content": "Checking both.",
    "tool_calls": [
        CALL["tool_calls"][0],
        {
            "id": "f6g7h8i9j",
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": {"city": "東京", "when": {"days": [1, 2]}, "metric": True},
            },
        },
    ],
}
RESULT2 = {"role": "tool", "content": '{"temp": 20}', "tool_call_id": "f6g7h8i9j"}


def u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: str, reasoning: str | None = None) -> dict[str, Any]:
    m = {"role": "assistant", "content": text}
    return m | {"reasoning_content": reasoning} if reasoning else m


SYSTEM = {"role": "system", "content": "Be brief."}
THINKING_CALL = CALL | {"reasoning_content": "I need the weather tool."}

# name: (messages, tools, template variables, add_generation_prompt)
CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], bool]] = {
    "plain": ([u("Hi"), a("Hello! <b>"), u("What is 2+2?")], [], {}, True),
    "system": ([SYSTEM, u("Hi")], [], {}, True),
    "no generation prompt": ([u("Hi"), a("Hello.")], [], {}, False),
    "tools": ([SYSTEM, u("Weather in Zürich?")], [WEATHER], {}, True),
    "tools, no system": ([u("Weather in Zürich?")], [WEATHER], {}, True),
    "tool turn": ([u("Weather in Zürich?"), CALL, RESULT], [WEATHER], {}, True),
    "tool turn answered": (
        [u("Weather in Zürich?"), CALL, RESULT, a("It rains."), u("Thanks")],
        [WEATHER],
        {},
        True,
    ),
    "two calls": (
        [SYSTEM, u("Zürich and Tokyo?"), TWO_CALLS, RESULT, RESULT2],
        [WEATHER, WEATHER | {"function": WEATHER["function"] | {"name": "get_time"}}],
        {},
        True,
    ),
    "reasoning": ([u("Hi"), a("Hello!", "The user greets me."), u("2+2?")], [], {}, True),
    "reasoning before a call": (
        [u("Weather in Zürich?"), THINKING_CALL, RESULT],
        [WEATHER],
        {},
        True,
    ),
    "thinking on": ([u("Hi")], [], {"enable_thinking": True}, True),
    "thinking off": ([u("Hi")], [], {"enable_thinking": False}, True),
    "thinking off, history": (
        [u("Hi"), a("Hello!", "The user greets me."), u("2+2?")],
        [],
        {"enable_thinking": False},
        True,
    ),
    # DeepSeek V3.1/V3.2 switch thinking with a variable named ``thinking``.
    "thinking variable": ([u("Hi")], [], {"thinking": True}, True),
    "effort low": ([u("Hi")], [], {"reasoning_effort": "low"}, True),
    "effort high": ([u("Hi")], [], {"reasoning_effort": "high"}, True),
    "tools, effort high": ([u("Weather?")], [WEATHER], {"reasoning_effort": "high"}, True),
}


class _PinnedClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _PinnedClock:  # type: ignore[override]
        return cls(2026, 3, 7, 9, 5, 0)


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``strftime_now`` on both sides reads the same instant (the module's
    ``datetime``, the way each side's helper reads the clock)."""
    import transformers.utils.chat_template_utils as hf_utils

    monkeypatch.setattr(hf_utils, "datetime", _PinnedClock)
    monkeypatch.setattr(chat_template_module, "datetime", _PinnedClock)


@pytest.fixture(scope="module")
def hf_tokenizer() -> PreTrainedTokenizerFast:
    vocab = Tokenizer(WordLevel({BOS: 0, EOS: 1}, unk_token=BOS))
    return PreTrainedTokenizerFast(tokenizer_object=vocab, bos_token=BOS, eos_token=EOS)


def template(name: str) -> str:
    return (TEMPLATE_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def core_messages(messages: list[dict[str, Any]]) -> tuple[Message, ...]:
    """What a dialect makes of these OpenAI-shaped messages."""
    return tuple(
        Message(
            m["role"],
            m["content"],
            tool_calls=tuple(
                ToolCall(c["id"], c["function"]["name"], json.dumps(c["function"]["arguments"]))
                for c in m.get("tool_calls", ())
            ),
            tool_call_id=m.get("tool_call_id"),
            reasoning=m.get("reasoning_content", ""),
        )
        for m in messages
    )


def core_tools(tools: list[dict[str, Any]]) -> tuple[Tool, ...]:
    return tuple(
        Tool(
            t["function"]["name"],
            t["function"]["description"],
            json.dumps(t["function"]["parameters"]),
        )
        for t in tools
    )


def hf_render(tok: PreTrainedTokenizerFast, source: str, case: tuple) -> str | Exception:
    messages, tools, variables, gen = case
    try:
        return tok.apply_chat_template(
            messages,
            chat_template=source,
            tools=tools or None,
            tokenize=False,
            add_generation_prompt=gen,
            **variables,
        )
    except Exception as e:  # what the template raised, to compare with llmkit's refusal
        return e


def llmkit_render(source: str, case: tuple) -> str | Exception:
    messages, tools, variables, gen = case
    try:
        return render_chat(
            source,
            core_messages(messages),
            tools=core_tools(tools),
            bos_token=BOS,
            eos_token=EOS,
            add_generation_prompt=gen,
            variables=variables,
        )
    except InvalidRequestError as e:
        return e


def generic_case(case: tuple) -> tuple:
    """The tool conversation as llmkit's generic format hands it to a template
    that does not know tools: tools and turns in the messages, no ``tools``."""
    messages, tools, variables, gen = case
    dicts = template_messages(core_messages(messages), core_tools(tools), native=False)
    return dicts, [], variables, gen


def mismatch(case_name: str, want: str | Exception, got: str | Exception) -> str | None:
    if isinstance(want, Exception):
        if not isinstance(got, InvalidRequestError):
            return f"{case_name}: transformers raised {want!r}, llmkit gave {got!r}"
        if isinstance(want, jinja2.TemplateError) and str(want) not in str(got):
            return f"{case_name}: transformers raised {want!r}, llmkit said {got}"
        return None
    if isinstance(got, Exception):
        return f"{case_name}: transformers rendered, llmkit raised {got!r}"
    if got != want:
        diff = difflib.unified_diff(want.splitlines(True), got.splitlines(True), "hf", "llmkit")
        return f"{case_name}:\n{''.join(diff)}"
    return None


@pytest.mark.parametrize("name", NAMES)
def test_prompt_equals_transformers(name: str, hf_tokenizer: PreTrainedTokenizerFast) -> None:
    source = template(name)
    knows_tools = template_knows_tools(source)
    assert knows_tools == (name not in GENERIC), GENERIC.get(name, "a template that knows tools")
    problems = []
    for case_name, case in CASES.items():
        reference = case if knows_tools or not case[1] else generic_case(case)
        want = hf_render(hf_tokenizer, source, reference)
        problem = mismatch(case_name, want, llmkit_render(source, case))
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_the_reference_templates_are_there() -> None:
    assert len(NAMES) >= 70, (
        f"llama.cpp's templates missing in {TEMPLATE_DIR}: run scripts/bootstrap.sh"
    )


def test_the_templates_transformers_cannot_render_are_listed(
    hf_tokenizer: PreTrainedTokenizerFast,
) -> None:
    """The exceptions above stay honest: exactly these fail under transformers
    whatever the conversation."""
    cannot = {
        name
        for name in NAMES
        if all(
            isinstance(hf_render(hf_tokenizer, template(name), c), Exception)
            for c in CASES.values()
        )
    }
    assert cannot == set(HF_CANNOT_RENDER)


def test_the_switches_reach_the_template() -> None:
    """The variables cases above compare something: the family switches change
    the prompt of the templates that read them."""
    qwen3, gpt_oss = template("Qwen-Qwen3-0.6B"), template("openai-gpt-oss-120b")
    hi = (Message("user", "Hi"),)
    on = render_chat(qwen3, hi, variables={"enable_thinking": True})
    off = render_chat(qwen3, hi, variables={"enable_thinking": False})
    assert off == on + "<think>\n\n</think>\n\n"
    low = render_chat(gpt_oss, hi, variables={"reasoning_effort": "low"})
    high = render_chat(gpt_oss, hi, variables={"reasoning_effort": "high"})
    assert "Reasoning: low" in low and "Reasoning: high" in high
    assert "Current date: 2026-03-07" in high  # the pinned clock, through strftime_now


def test_earlier_reasoning_reaches_templates_under_their_names() -> None:
    """Qwen3 reads ``reasoning_content``, gpt-oss ``thinking``: both see it."""
    turn = (
        Message("user", "Weather?"),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("a1b2c3d4e", "get_weather", '{"city": "Oslo"}'),),
            reasoning="Use the tool.",
        ),
        Message("tool", "rain", tool_call_id="a1b2c3d4e"),
    )
    tools = core_tools([WEATHER])
    for name in ("Qwen-Qwen3-0.6B", "openai-gpt-oss-120b"):
        assert "Use the tool." in render_chat(template(name), turn, tools=tools)


def test_template_variables_cannot_replace_what_render_chat_sets() -> None:
    with pytest.raises(ValueError, match="messages"):
        render_chat("{{ messages }}", (Message("user", "hi"),), variables={"messages": []})


def test_the_sandbox_is_kept_as_transformers_keeps_it(
    hf_tokenizer: PreTrainedTokenizerFast,
) -> None:
    """Underscore names on a namespace are refused on both sides (the way out of
    a sandbox goes through them), and ``dict.fromkeys`` works on both."""
    hi = ([u("hi")], [], {}, True)
    escape = "{% set ns = namespace(_x=1) %}{{ ns._x }}"
    assert isinstance(hf_render(hf_tokenizer, escape, hi), jinja2.exceptions.SecurityError)
    assert isinstance(llmkit_render(escape, hi), InvalidRequestError)
    keys = "{{ dict.fromkeys(['a', 'b'], 0) | tojson }}|{{ '<&>' | tojson }}"
    assert llmkit_render(keys, hi) == hf_render(hf_tokenizer, keys, hi) == '{"a": 0, "b": 0}|"<&>"'
