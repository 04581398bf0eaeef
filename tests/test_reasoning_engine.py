"""Reasoning models in the local engines, on real decoding: the bundled weights
given a reasoning family's real chat template (``family_models``), the family
found from it at load, its thinking switch in the prompt, its replies read by
its parser on the decode thread, a thinking budget closed by the engine, and
grammars that hold only the answer.

The 135M model never closes a thinking by itself, so every structural claim is
checked against the token ids the engine reports: the thinking is the text of
the tokens before the family's close marker, the answer the text of those after
it, and the close marker is where the budget says it is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest

from llmkit.config.file import ModelEntry
from llmkit.core.types import (
    GenerateRequest,
    Message,
    SamplingParams,
    Tool,
    ToolCallDelta,
    Usage,
)
from llmkit.engines.chat_template import render_chat
from llmkit.engines.llamacpp.engine import LlamaCppEngine
from llmkit.engines.llamacpp.model import LoadOptions
from llmkit.engines.local import LocalEngine
from llmkit.engines.registry import ServedModel
from llmkit.engines.spec import load_specs
from llmkit.env import Environment
from llmkit.errors import ThinkingUnsupportedError
from llmkit.serving.build import build_models
from tests.family_models import FamilyModels, template

R1 = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"
QWEN3 = "Qwen-Qwen3-0.6B"
ASK = (Message("user", "What is 2+2?"),)
GREEDY = SamplingParams(temperature=0)
ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 20}},
    "required": ["answer"],
}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}


@dataclass
class Reply:
    text: str = ""
    reasoning: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    usage: Usage | None = None
    finish: str | None = None


async def _reply(engine: LocalEngine, req: GenerateRequest) -> Reply:
    out = Reply()
    async for c in engine.generate(req):
        out.text += c.text
        out.reasoning += c.reasoning
        out.calls += c.tool_calls
        out.ids += c.token_ids
        out.usage, out.finish = c.usage or out.usage, c.finish_reason or out.finish
    return out


def reply(engine: LocalEngine, **kw: object) -> Reply:
    args: dict = {"messages": ASK, "sampling": GREEDY, "max_tokens": 40, **kw}
    return asyncio.run(_reply(engine, GenerateRequest(**args)))


def _engine(path: str) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(LoadOptions(path=path, n_ctx=1024, parallel=2, n_threads=2))
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def r1(family_models: FamilyModels) -> Iterator[LlamaCppEngine]:
    yield from _engine(family_models.path(R1))


@pytest.fixture(scope="module")
def qwen3(family_models: FamilyModels) -> Iterator[LlamaCppEngine]:
    yield from _engine(family_models.path(QWEN3))


@pytest.fixture(scope="module")
def smol(bundled_path: str) -> Iterator[LlamaCppEngine]:
    yield from _engine(bundled_path)


def text_of(engine: LlamaCppEngine, ids: list[int]) -> str:
    """What the tokens say, control tokens included (as a family's parser reads
    them), end-of-generation tokens excluded."""
    lm = engine.lm
    return b"".join(lm.piece(t, not lm.is_eog(t)) for t in ids).decode("utf-8", "replace")


def close_ids(engine: LlamaCppEngine) -> list[int]:
    return engine.lm.tokenize(engine.family.close_thinking, add_bos=False, special=True)


def prompt_text(engine: LlamaCppEngine, **kw: object) -> str:
    req = GenerateRequest(messages=ASK, **kw)  # type: ignore[arg-type]
    return text_of(engine, asyncio.run(engine.encode(req)))


# -- the family, found at load ------------------------------------------------------


def test_a_template_that_opens_the_thinking_makes_a_thinking_model(r1, smol):
    assert r1.family.thinks and "thinking" in r1.info.capabilities
    assert not smol.family.thinks and "thinking" not in smol.info.capabilities
    # R1-distill's generation prompt ends inside the thinking: the reply starts there.
    assert prompt_text(r1, think=True).endswith("<｜Assistant｜><think>\n")


# -- replies: thinking apart from the answer ---------------------------------------------


def test_a_budget_closes_the_thinking_with_the_family_marker_and_the_answer_follows(r1):
    budget = 12
    out = reply(r1, think=True, reasoning_budget=budget, ignore_eos=True)
    close = close_ids(r1)
    # The engine wrote the family's close marker right after the budget's tokens...
    assert out.ids[budget : budget + len(close)] == close
    assert out.usage.reasoning_tokens == budget
    # ...and usage counts every token the reply took, thinking and answer (max_tokens).
    assert out.usage.completion_tokens == len(out.ids) == 40 and out.finish == "length"
    # The thinking is what came before the marker, the answer what came after.
    assert out.reasoning.strip() == text_of(r1, out.ids[:budget]).strip() != ""
    assert out.text.strip() == text_of(r1, out.ids[budget + len(close) :]).strip() != ""
    assert "<think>" not in out.reasoning and "</think>" not in out.reasoning


def test_a_thinking_cut_by_max_tokens_is_reasoning_not_content(r1):
    out = reply(r1, think=True, max_tokens=16, ignore_eos=True)
    assert out.text == "" and out.reasoning.strip() == text_of(r1, out.ids).strip() != ""
    assert out.finish == "length"
    assert out.usage.reasoning_tokens == out.usage.completion_tokens == 16


def test_a_budget_of_zero_closes_the_thinking_before_it_starts(r1):
    out = reply(r1, think=True, reasoning_budget=0, max_tokens=20, ignore_eos=True)
    close = close_ids(r1)
    assert out.ids[: len(close)] == close
    assert out.usage.reasoning_tokens == 0 and out.reasoning == ""
    assert out.text.strip() == text_of(r1, out.ids[len(close) :]).strip() != ""


def test_an_effort_level_is_a_budget_where_the_template_takes_none(r1):
    # R1's template takes no effort level: "low" is 512 thinking tokens (EFFORT_BUDGET).
    low = reply(r1, think=True, effort="low", max_tokens=24, ignore_eos=True)
    assert low.text == "" and low.usage.reasoning_tokens == 24  # far from 512: not closed
    told = reply(r1, think=True, effort="low", reasoning_budget=5, max_tokens=24, ignore_eos=True)
    assert told.usage.reasoning_tokens == 5  # a budget the request names wins


def test_json_mode_holds_the_answer_after_free_thinking(r1):
    fmt = SamplingParams(temperature=0, response_format="json", json_schema=json.dumps(ANSWER))
    out = reply(r1, think=True, reasoning_budget=8, sampling=fmt, max_tokens=80)
    assert out.usage.reasoning_tokens == 8 and out.reasoning.strip()
    jsonschema.validate(json.loads(out.text), ANSWER)
    assert out.finish == "stop"


def test_a_forced_call_after_thinking_is_one_call_in_the_family_syntax(r1):
    tool = Tool("get_weather", "The weather in a city", json.dumps(WEATHER))
    out = reply(
        r1,
        think=True,
        reasoning_budget=8,
        tools=(tool,),
        tool_choice="required",
        tool_name="get_weather",
        max_tokens=300,
    )
    assert out.usage.reasoning_tokens == 8 and out.reasoning.strip()
    names = [c.name for c in out.calls if c.name]
    assert names == ["get_weather"] and out.finish == "tool_calls"
    jsonschema.validate(json.loads("".join(c.arguments for c in out.calls)), WEATHER)
    assert out.usage.completion_tokens == len(out.ids) < 300


def test_the_transformers_engine_closes_a_spent_budget_as_llama_cpp_does(family_models):
    from llmkit.engines.transformers.engine import TransformersEngine
    from llmkit.engines.transformers.spec import TransformersOptions

    path = Path(family_models.path(R1))
    engine = TransformersEngine(
        TransformersOptions(threads=1, parallel=1),
        source=path.parent,
        gguf_file=path.name,
        n_ctx=512,
    )
    asyncio.run(engine.start())
    try:
        assert engine.family.thinks and "thinking" in engine.info.capabilities
        out = reply(engine, think=True, reasoning_budget=8, max_tokens=24, ignore_eos=True)
        close = engine.tokenize_text(engine.family.close_thinking, True)
        assert out.ids[8 : 8 + len(close)] == close and out.usage.reasoning_tokens == 8
        assert out.reasoning.strip() and out.text.strip()
        assert "</think>" not in out.reasoning
    finally:
        asyncio.run(engine.close())


def test_the_served_model_budget_applies_where_the_request_names_neither_budget_nor_effort(r1):
    served = ServedModel(["r1"], r1, reasoning_budget=6)
    served.loaded = True  # the engine is the module's, already started

    def thinking(**kw: object) -> int:
        req = GenerateRequest(
            messages=ASK, think=True, sampling=GREEDY, max_tokens=20, ignore_eos=True, **kw
        )  # type: ignore[arg-type]
        return asyncio.run(_reply(served.engine, req)).usage.reasoning_tokens

    assert thinking() == 6
    assert thinking(reasoning_budget=3) == 3  # the request's own
    assert thinking(effort="high") == 20  # an effort decides: high is no limit


def test_reasoning_budget_is_a_served_model_setting(bundled_path, tmp_path):
    env = Environment.read({"LLMKIT_MODELS": str(tmp_path)})
    [given] = build_models(ModelEntry(model=bundled_path, reasoning_budget=64), load_specs(), env)
    [default] = build_models(ModelEntry(model=bundled_path), load_specs(), env)
    assert (given.reasoning_budget, default.reasoning_budget) == (64, None)


# -- the thinking switch ---------------------------------------------------------------


def test_qwen3_think_false_renders_the_no_think_form_and_yields_no_reasoning(qwen3):
    assert qwen3.family.thinks and qwen3.family.thinking_optional
    lm = qwen3.lm
    expected = render_chat(
        template(QWEN3),
        ASK,
        bos_token=lm.token_text(lm.bos_id),
        eos_token=lm.token_text(lm.eos_id),
        variables={"enable_thinking": False},
    )
    got = asyncio.run(qwen3.encode(GenerateRequest(messages=ASK, think=False)))
    assert got == qwen3.chat_text_tokens(expected)
    assert expected.endswith("<think>\n\n</think>\n\n")  # the template's own no-think form
    assert "</think>" not in prompt_text(qwen3, think=True)
    out = reply(qwen3, think=False, max_tokens=16, ignore_eos=True)
    assert out.reasoning == "" and out.usage.reasoning_tokens == 0
    assert out.text.strip() == text_of(qwen3, out.ids).strip() != ""


def test_qwen3_json_and_forced_calls_without_think_switch_the_thinking_off_and_hold(qwen3):
    # Qwen3's model opens its thinking itself: a grammar for the whole answer cannot
    # wait for a thinking that may not come, so thinking not asked for is off.
    tool = Tool("get_weather", "The weather in a city", json.dumps(WEATHER))
    ask = (Message("user", "What is the weather in Paris?"),)
    forced = {"messages": ask, "tools": (tool,), "tool_choice": "required", "max_tokens": 200}
    held = asyncio.run(qwen3.encode(GenerateRequest(**forced)))  # type: ignore[arg-type]
    assert text_of(qwen3, held).endswith("<think>\n\n</think>\n\n")
    out = reply(qwen3, **forced, parallel_tool_calls=False)
    assert [c.name for c in out.calls if c.name] == ["get_weather"]
    assert out.finish == "tool_calls" and out.reasoning == ""
    jsonschema.validate(json.loads("".join(c.arguments for c in out.calls)), WEATHER)
    fmt = SamplingParams(temperature=0, response_format="json", json_schema=json.dumps(ANSWER))
    out = reply(qwen3, sampling=fmt, max_tokens=80)
    jsonschema.validate(json.loads(out.text), ANSWER)
    # Free text is another matter: the model's own default stands.
    assert "</think>" not in prompt_text(qwen3)


def test_a_template_that_opens_the_thinking_is_switched_off_for_a_forced_call_unasked(r1):
    # R1-distill's prompt opens the thinking (llama.cpp's copy takes the switch): a
    # call the model started inside it would end it mid-call, past the grammar's
    # start, so a forced call not asking for thinking gets the no-think prompt.
    tool = Tool("get_weather", "The weather in a city", json.dumps(WEATHER))
    forced = {"messages": ASK, "tools": (tool,), "tool_choice": "required", "max_tokens": 300}

    def prompt(**kw: object) -> str:
        return text_of(r1, asyncio.run(r1.encode(GenerateRequest(**forced, **kw))))  # type: ignore[arg-type]

    assert not prompt().rstrip().endswith("<think>")
    assert prompt(think=True).rstrip().endswith("<think>")  # asked for: it stays
    out = reply(r1, **forced, tool_name="get_weather")
    assert [c.name for c in out.calls if c.name] == ["get_weather"]
    assert out.finish == "tool_calls" and out.reasoning == "" and out.usage.reasoning_tokens == 0


def test_thinking_asked_of_a_model_that_cannot_think_is_refused_before_any_work(smol):
    async def ask(engine, think: bool | None) -> Reply:
        return await _reply(engine, GenerateRequest(messages=ASK, think=think, max_tokens=4))

    with pytest.raises(ThinkingUnsupportedError):
        asyncio.run(ask(smol, True))
    served = ServedModel(["smol"], smol)
    served.loaded = True  # the engine is the module's, already started
    with pytest.raises(ThinkingUnsupportedError) as e:
        asyncio.run(ask(served.engine, True))
    assert e.value.model == "smol" and e.value.param == "think"
    # think false is taken from every model; a family that cannot think has nothing to split
    out = asyncio.run(ask(smol, False))
    assert out.usage.completion_tokens == len(out.ids) > 0 and out.reasoning == ""


# -- forced calls end cleanly ----------------------------------------------------------


def test_forced_calls_end_with_the_reply_and_usage_counts_what_was_generated(smol):
    weather = Tool("get_weather", "The weather in a city", json.dumps(WEATHER))
    ask = (Message("user", "What is the weather in Paris?"),)
    for one in ({"tool_name": "get_weather"}, {"parallel_tool_calls": False}):
        out = reply(
            smol, messages=ask, tools=(weather,), tool_choice="required", **one, max_tokens=200
        )
        assert [c.name for c in out.calls if c.name] == ["get_weather"]
        assert out.finish == "tool_calls" and out.text == ""
        assert out.usage.completion_tokens == len(out.ids) < 200
    # Parallel calls allowed: as many as the model makes, each whole; usage is what it took.
    out = reply(smol, messages=ask, tools=(weather,), tool_choice="required", max_tokens=200)
    assert out.calls and out.usage.completion_tokens == len(out.ids) <= 200
    args = [c.arguments for c in out.calls if c.arguments]
    for a in args:
        jsonschema.validate(json.loads(a), WEATHER)
