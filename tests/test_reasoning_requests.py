"""Table tests: each dialect's way of asking for thinking, read into core's
switch (``GenerateRequest.think`` / ``effort`` / ``reasoning_budget``) and an
earlier turn's thinking into ``Message.reasoning``; bad values are 400s naming
the field and the values it takes. No server: the converters are pure.

The allowed values are the dialects' own: OpenAI's ``ReasoningEffort`` enum
(its published spec), Anthropic's thinking rules (``budget_tokens`` at least
1024 and under ``max_tokens``), Ollama's ``think`` (its ``ThinkValue``)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from llmkit.api.anthropic import convert as aconv
from llmkit.api.anthropic import schemas as aschemas
from llmkit.api.ollama import convert as oconv
from llmkit.api.ollama import schemas as oschemas
from llmkit.api.openai import convert as chat
from llmkit.api.openai import schemas as cschemas
from llmkit.api.reasoning import read_effort, refuse_thinking
from llmkit.api.responses import convert as rconv
from llmkit.api.responses.input_items import read_input
from llmkit.api.responses.schemas import ResponseCreateRequest
from llmkit.core.types import EngineInfo, GenerateRequest, Message
from llmkit.errors import InvalidRequestError, ThinkingUnsupportedError

HI = [{"role": "user", "content": "Hi"}]


def openai_req(**body: Any) -> GenerateRequest:
    return chat.from_chat_request(
        cschemas.ChatCompletionRequest.model_validate({"model": "m", "messages": HI, **body})
    )


def responses_req(**body: Any) -> GenerateRequest:
    n = itertools.count()
    turn = rconv.from_request(
        ResponseCreateRequest(model="m", input="Hi", **body), lambda p: f"{p}_{next(n)}"
    )
    return rconv.to_generate_request(turn, tuple(turn.messages), None)


def anthropic_req(**body: Any) -> GenerateRequest:
    body = {"model": "m", "max_tokens": 4096, "messages": HI, **body}
    return aconv.from_messages_request(aschemas.MessagesRequest.model_validate(body))


def ollama_req(**body: Any) -> GenerateRequest:
    return oconv.from_chat_request(
        oschemas.ChatRequest.model_validate({"model": "m", "messages": HI, **body})
    )


def switch(req: GenerateRequest) -> tuple[bool | None, str | None, int | None]:
    return req.think, req.effort, req.reasoning_budget


# -- the shared words --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        ("none", (False, None)),
        ("minimal", (False, None)),
        ("low", (None, "low")),
        ("medium", (None, "medium")),
        ("high", (None, "high")),
        ("xhigh", (None, "high")),
        ("max", (None, "high")),
    ],
)
def test_openai_efforts_are_a_switch_and_three_levels(value, expected):
    assert read_effort(
        value, ("none", "minimal", "low", "medium", "high", "xhigh", "max"), "p"
    ) == (expected)


def test_refusal_needs_thinking_asked_and_a_model_without_it():
    plain = EngineInfo(engine="e", model="m", context_length=8)
    thinker = EngineInfo(engine="e", model="m", context_length=8, capabilities=("thinking",))
    asked = [GenerateRequest(prompt="x", think=True)]
    with pytest.raises(ThinkingUnsupportedError) as e:
        refuse_thinking("smol", plain, asked, "reasoning_effort")
    assert (e.value.message, e.value.param, e.value.status) == (
        '"smol" does not support thinking',
        "reasoning_effort",
        400,
    )
    refuse_thinking("smol", thinker, asked, "think")
    for think in (False, None):
        refuse_thinking("smol", plain, [GenerateRequest(prompt="x", think=think)], "think")


# -- each dialect --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (None, None, None)),
        ({"reasoning_effort": "none"}, (False, None, None)),
        ({"reasoning_effort": "medium"}, (None, "medium", None)),
        ({"chat_template_kwargs": {"enable_thinking": False, "x": 1}}, (False, None, None)),
        ({"chat_template_kwargs": {"thinking": True}}, (True, None, None)),
        ({"think": False, "reasoning_effort": "minimal"}, (False, None, None)),
        ({"think": True, "reasoning_effort": "low"}, (True, "low", None)),
    ],
)
def test_openai_chat(body, expected):
    assert switch(openai_req(**body)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (None, None, None)),
        ({"reasoning": {"effort": "minimal"}}, (False, None, None)),
        ({"reasoning": {"effort": "high", "summary": "detailed"}}, (None, "high", None)),
        ({"reasoning": {"summary": "auto"}}, (None, None, None)),
    ],
)
def test_responses(body, expected):
    assert switch(responses_req(**body)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (None, None, None)),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, (True, None, 1024)),
        ({"thinking": {"type": "enabled", "budget_tokens": 4095}}, (True, None, 4095)),
        ({"thinking": {"type": "disabled"}}, (False, None, None)),
        ({"thinking": {"type": "adaptive", "display": "omitted"}}, (None, None, None)),
        ({"output_config": {"effort": "low"}}, (None, "low", None)),
        (
            {
                "thinking": {"type": "enabled", "budget_tokens": 2000},
                "output_config": {"effort": "max"},
            },
            (True, "high", 2000),
        ),
    ],
)
def test_anthropic(body, expected):
    assert switch(anthropic_req(**body)) == expected


def test_anthropic_token_counts_read_thinking_without_max_tokens():
    body = {"model": "m", "messages": HI, "thinking": {"type": "enabled", "budget_tokens": 9000}}
    req = aconv.from_count_request(aschemas.CountTokensRequest.model_validate(body))
    assert switch(req) == (True, None, 9000)


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        (None, (None, None, None)),
        (True, (True, None, None)),
        (False, (False, None, None)),
        ("low", (True, "low", None)),
        ("medium", (True, "medium", None)),
        ("high", (True, "high", None)),
    ],
)
def test_ollama(think, expected):
    assert switch(ollama_req(think=think)) == expected
    body = {"model": "m", "prompt": "Hi", "think": think}
    generated = oconv.from_generate_request(oschemas.GenerateRequest.model_validate(body))
    assert switch(generated) == expected


# -- bad values ----------------------------------------------------------------------

BAD = [
    pytest.param(
        lambda: openai_req(reasoning_effort="hard"),
        "reasoning_effort",
        'reasoning_effort must be one of "none", "minimal", "low", "medium", "high", "xhigh" '
        "or \"max\"; got 'hard'.",
        id="openai effort",
    ),
    pytest.param(
        lambda: openai_req(chat_template_kwargs={"enable_thinking": True, "thinking": False}),
        "chat_template_kwargs.thinking",
        "chat_template_kwargs sets thinking both on and off",
        id="openai switches at odds",
    ),
    pytest.param(
        lambda: openai_req(think=False, chat_template_kwargs={"enable_thinking": True}),
        "think",
        "chat_template_kwargs.enable_thinking and think disagree",
        id="openai think against kwargs",
    ),
    pytest.param(
        lambda: responses_req(reasoning={"effort": "ultra"}),
        "reasoning.effort",
        "reasoning.effort must be one of",
        id="responses effort",
    ),
    pytest.param(
        lambda: responses_req(reasoning={"generate_summary": "short"}),
        "reasoning.summary",
        'reasoning.summary must be one of "auto", "concise" or "detailed"',
        id="responses summary",
    ),
    pytest.param(
        lambda: anthropic_req(thinking={"type": "enabled", "budget_tokens": 1023}),
        "thinking.budget_tokens",
        "thinking.budget_tokens must be at least 1024; got 1023.",
        id="anthropic budget too small",
    ),
    pytest.param(
        lambda: anthropic_req(thinking={"type": "enabled", "budget_tokens": 4096}),
        "max_tokens",
        "max_tokens (4096) must be greater than thinking.budget_tokens (4096)",
        id="anthropic budget past max_tokens",
    ),
    pytest.param(
        lambda: anthropic_req(thinking={"type": "enabled", "budget_tokens": "lots"}),
        "thinking.budget_tokens",
        "thinking.budget_tokens is required",
        id="anthropic budget not a number",
    ),
    pytest.param(
        lambda: anthropic_req(thinking={"type": "on"}),
        "thinking.type",
        'thinking.type must be one of "enabled", "disabled", "adaptive" or "between_tools"',
        id="anthropic type",
    ),
    pytest.param(
        lambda: anthropic_req(thinking={"type": "adaptive", "display": "full"}),
        "thinking.display",
        'thinking.display must be "summarized" or "omitted"',
        id="anthropic display",
    ),
    pytest.param(
        lambda: anthropic_req(output_config={"effort": "minimal"}),
        "output_config.effort",
        "output_config.effort must be one of",
        id="anthropic effort",
    ),
    pytest.param(
        lambda: ollama_req(think="max"),
        "think",
        'invalid think value: "max" (must be "high", "medium", "low", true, or false)',
        id="ollama level",
    ),
]


@pytest.mark.parametrize(("make", "param", "words"), BAD)
def test_bad_values_are_400s_naming_the_field_and_values(make, param, words):
    with pytest.raises(InvalidRequestError) as e:
        make()
    assert e.value.param == param and e.value.status == 400
    assert words in e.value.message


# -- earlier thinking in the history -------------------------------------------------


def test_history_thinking_becomes_message_reasoning_in_every_dialect():
    said = Message("assistant", "Four.", reasoning="2+2 is 4.")
    for key in ("reasoning_content", "reasoning"):
        turn = {"role": "assistant", "content": "Four.", key: "2+2 is 4."}
        assert openai_req(messages=[*HI, turn]).messages[1] == said  # type: ignore[index]
    # reasoning is an assistant's: a user message carrying the key keeps none
    user = openai_req(messages=[{"role": "user", "content": "x", "reasoning": "no"}])
    assert user.messages[0].reasoning == ""  # type: ignore[index]
    turn = {"role": "assistant", "content": "Four.", "thinking": "2+2 is 4."}
    assert ollama_req(messages=[*HI, turn]).messages[1] == said  # type: ignore[index]
    blocks = [
        {"type": "thinking", "thinking": "2+2 ", "signature": "s"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "thinking", "thinking": "is 4.", "signature": "s"},
        {"type": "text", "text": "Four."},
    ]
    sent = anthropic_req(messages=[*HI, {"role": "assistant", "content": blocks}])
    assert sent.messages[1] == said  # type: ignore[index]


def test_responses_reasoning_items_go_to_the_turn_they_led_to():
    n = itertools.count()
    thought = {
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "2+2 is 4."}],
    }
    summarised = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Adds."}]}
    call = {"type": "function_call", "call_id": "c1", "name": "add", "arguments": "{}"}
    items, messages = read_input(
        [
            *HI,
            thought,
            {"role": "assistant", "content": "Four."},
            summarised,
            call,
            {"type": "function_call_output", "call_id": "c1", "output": "4"},
        ],
        lambda p: f"{p}_{next(n)}",
    )
    assert [(m.role, m.reasoning) for m in messages] == [
        ("user", ""),
        ("assistant", "2+2 is 4."),
        ("assistant", "Adds."),
        ("tool", ""),
    ]
    assert items[1]["type"] == "reasoning" and items[1]["id"].startswith("rs_")
    with pytest.raises(InvalidRequestError) as e:
        read_input([{"type": "reasoning", "content": [{"type": "x"}]}], str)
    assert e.value.param == "input.0.content.0"


def test_sealed_thinking_reads_back_and_anything_else_reads_as_none():
    from llmkit.api.responses.reasoning import seal, unseal

    for text in ("", "2+2 is 4.", "思考 🤔"):
        assert unseal(seal(text)) == text
    for foreign in ("gAAAAABo-openai-ciphertext", "llmkit.%%%", None, 5):
        assert unseal(foreign) == ""
