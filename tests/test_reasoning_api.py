"""Thinking through every dialect, end to end: a real server on loopback serving
a scripted reasoning model (``tests.thinking_engine``), driven by the official
``openai``, ``anthropic`` and ``ollama`` clients. The clients' own parsers and
stream accumulators assemble what the server sent; each test checks that the
thinking arrives apart from the answer, that each dialect's switch reaches the
engine's request, and that bad values and thinking asked of a model that cannot
think get the dialect's own error."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import ollama
import openai
import pytest

from tests.thinking_engine import CALL_ARGS, THOUGHT, Scripted, thinking_server

THINKING = "".join(THOUGHT)
ASK = [{"role": "user", "content": "What is 2+2?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Scripted]]]:
    db = tmp_path_factory.mktemp("reasoning") / "llmkit.db"
    with thinking_server(f"sqlite:///{db}") as found:
        yield found


@pytest.fixture()
def engines(served: tuple[str, dict[str, Scripted]]) -> dict[str, Scripted]:
    for e in served[1].values():
        e.seen.clear()
    return served[1]


@pytest.fixture()
def oai(served: tuple[str, dict[str, Scripted]]) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="unused", max_retries=0)


@pytest.fixture()
def claude(served: tuple[str, dict[str, Scripted]]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served[0], api_key="unused", max_retries=0)


@pytest.fixture()
def olla(served: tuple[str, dict[str, Scripted]]) -> ollama.Client:
    return ollama.Client(host=served[0])


# -- OpenAI chat -----------------------------------------------------------------


def test_openai_chat_answers_thinking_apart_whole_and_streamed(oai, engines):
    r = oai.chat.completions.create(model="thinker", messages=ASK)
    message = r.choices[0].message
    assert message.content == "Four." and message.reasoning_content == THINKING  # type: ignore[attr-defined]
    assert r.usage.completion_tokens_details.reasoning_tokens == 6
    chunks = list(
        oai.chat.completions.create(
            model="thinker", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thought = [getattr(d, "reasoning_content", None) for d in deltas]
    said = [d.content for d in deltas]
    assert "".join(t for t in thought if t) == THINKING
    assert "".join(s for s in said if s) == "Four."
    # every piece of thinking comes before the first piece of the answer
    assert max(i for i, t in enumerate(thought) if t) < min(i for i, s in enumerate(said) if s)
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 6


def test_openai_chat_thinking_then_a_call(oai):
    r = oai.chat.completions.create(model="caller", messages=ASK, tools=[WEATHER])
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and message.content is None
    assert message.reasoning_content == "I need the weather."  # type: ignore[attr-defined]
    assert message.tool_calls[0].function.arguments == CALL_ARGS


@pytest.mark.parametrize(
    ("extra", "think", "effort"),
    [
        ({"reasoning_effort": "low"}, None, "low"),
        ({"reasoning_effort": "max"}, None, "high"),
        ({"reasoning_effort": "none"}, False, None),
        ({"reasoning_effort": "minimal"}, False, None),
        ({"extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}, False, None),
        ({"extra_body": {"chat_template_kwargs": {"thinking": True}}}, True, None),
        ({"extra_body": {"think": True}, "reasoning_effort": "high"}, True, "high"),
        ({}, None, None),
    ],
)
def test_openai_chat_switches_reach_the_engine(oai, engines, extra, think, effort):
    oai.chat.completions.create(model="thinker", messages=ASK, **extra)
    (req,) = engines["thinker"].seen
    assert (req.think, req.effort) == (think, effort)


def test_openai_history_thinking_is_kept_under_either_name(oai, engines):
    for key in ("reasoning_content", "reasoning"):
        history = [*ASK, {"role": "assistant", "content": "Four.", key: "2+2 is 4."}, *ASK]
        oai.chat.completions.create(model="thinker", messages=history)
        assert engines["thinker"].seen[-1].messages[1].reasoning == "2+2 is 4."


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort", '"none", "minimal", "low"'),
        (
            {"extra_body": {"chat_template_kwargs": {"enable_thinking": "yes"}}},
            "chat_template_kwargs.enable_thinking",
            "true or false",
        ),
        (
            {"reasoning_effort": "none", "extra_body": {"think": True}},
            "think",
            "reasoning_effort and think disagree",
        ),
    ],
)
def test_openai_bad_thinking_values_are_400s_naming_the_field(oai, extra, param, words):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="thinker", messages=ASK, **extra)
    error = e.value.body
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]


def test_openai_thinking_from_a_model_that_cannot_is_refused_but_off_is_fine(oai, engines):
    for extra, param in [
        ({"extra_body": {"think": True}}, "think"),
        ({"extra_body": {"chat_template_kwargs": {"enable_thinking": True}}}, None),
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(model="plain", messages=ASK, **extra)
        assert e.value.body["message"] == '"plain" does not support thinking'
        assert e.value.body["param"] == (param or "chat_template_kwargs.enable_thinking")
    assert engines["plain"].seen == []
    for extra in (
        {"reasoning_effort": "none"},
        {"reasoning_effort": "high"},
        {"extra_body": {"think": False}},
    ):
        r = oai.chat.completions.create(model="plain", messages=ASK, **extra)
        assert r.choices[0].message.content == "Four."
        assert getattr(r.choices[0].message, "reasoning_content", None) is None


# -- Responses -----------------------------------------------------------------------


def test_responses_reasoning_item_before_the_message_whole_and_streamed(oai, engines):
    r = oai.responses.create(model="thinker", input="What is 2+2?", reasoning={"effort": "low"})
    assert [o.type for o in r.output] == ["reasoning", "message"]
    item = r.output[0]
    assert item.id.startswith("rs_") and item.summary == []
    assert [(c.type, c.text) for c in item.content] == [("reasoning_text", THINKING)]
    assert r.output_text == "Four." and r.usage.output_tokens_details.reasoning_tokens == 6
    assert r.reasoning.effort == "low" and engines["thinker"].seen[-1].effort == "low"
    # The SDK's stream state checks every event against the items it assembled.
    with oai.responses.stream(model="thinker", input="What is 2+2?") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == THINKING and final.output_text == "Four."
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert kinds.count("response.reasoning_text.delta") == len(THOUGHT)


def test_responses_chains_hand_earlier_thinking_back(oai, engines):
    first = oai.responses.create(model="thinker", input="What is 2+2?")
    oai.responses.create(model="thinker", input="And 3+3?", previous_response_id=first.id)
    sent = engines["thinker"].seen[-1].messages
    assert [(m.role, m.reasoning) for m in sent] == [
        ("user", ""),
        ("assistant", THINKING),
        ("user", ""),
    ]
    # Streamed and stored the same way.
    with oai.responses.stream(model="thinker", input="What is 2+2?") as stream:
        streamed = stream.get_final_response()
    oai.responses.create(model="thinker", input="And 3+3?", previous_response_id=streamed.id)
    assert engines["thinker"].seen[-1].messages[1].reasoning == THINKING
    # A client keeping its own context sends the reasoning item back in input.
    given = [o.model_dump(exclude_none=True) for o in first.output]
    again = [*ASK, *given, {"role": "user", "content": "And 3+3?"}]
    oai.responses.create(model="thinker", input=again, store=False)  # type: ignore[arg-type]
    sent = engines["thinker"].seen[-1].messages
    assert [(m.role, m.content, m.reasoning) for m in sent] == [
        ("user", ASK[0]["content"], ""),
        ("assistant", "Four.", THINKING),
        ("user", "And 3+3?", ""),
    ]


def test_responses_stateless_clients_get_the_thinking_back_through_encrypted_content(oai, engines):
    """Codex's way: store false, include encrypted_content, and send back only that."""
    include = ["reasoning.encrypted_content"]
    r = oai.responses.create(model="thinker", input="What is 2+2?", store=False, include=include)
    with oai.responses.stream(
        model="thinker", input="What is 2+2?", store=False, include=include
    ) as stream:
        streamed = stream.get_final_response()
    for answer in (r, streamed):
        item = answer.output[0]
        assert item.encrypted_content and THINKING not in item.encrypted_content
        back = {
            "type": "reasoning",
            "id": item.id,
            "summary": [],
            "encrypted_content": item.encrypted_content,
        }
        again = [*ASK, back, answer.output[1].model_dump(exclude_none=True), *ASK]
        oai.responses.create(model="thinker", input=again, store=False)  # type: ignore[arg-type]
        assert engines["thinker"].seen[-1].messages[1].reasoning == THINKING
    plain = oai.responses.create(model="thinker", input="What is 2+2?", store=False)
    assert plain.output[0].encrypted_content is None  # only when asked for


@pytest.mark.parametrize(
    ("reasoning", "think", "effort"),
    [({"effort": "none"}, False, None), ({"effort": "high", "summary": "auto"}, None, "high")],
)
def test_responses_effort_reaches_the_engine(oai, engines, reasoning, think, effort):
    r = oai.responses.create(model="thinker", input="Hi", reasoning=reasoning)
    assert (engines["thinker"].seen[-1].think, engines["thinker"].seen[-1].effort) == (
        think,
        effort,
    )
    assert r.reasoning.effort == reasoning["effort"]


@pytest.mark.parametrize(
    ("reasoning", "param"),
    [({"effort": "extreme"}, "reasoning.effort"), ({"summary": "long"}, "reasoning.summary")],
)
def test_responses_bad_reasoning_values_are_400s(oai, reasoning, param):
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="thinker", input="Hi", reasoning=reasoning)
    assert e.value.body["param"] == param and "must be one of" in e.value.body["message"]


# -- Anthropic -----------------------------------------------------------------------


def test_anthropic_thinking_blocks_whole_and_streamed(claude, engines):
    thinking = {"type": "enabled", "budget_tokens": 2048}
    msg = claude.messages.create(model="thinker", max_tokens=4096, messages=ASK, thinking=thinking)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == THINKING and msg.content[0].signature
    assert msg.content[1].text == "Four."
    assert msg.usage.output_tokens_details.thinking_tokens == 6
    req = engines["thinker"].seen[-1]
    assert (req.think, req.reasoning_budget, req.max_tokens) == (True, 2048, 4096)
    with claude.messages.stream(
        model="thinker", max_tokens=4096, messages=ASK, thinking=thinking
    ) as stream:
        kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in stream]
        final = stream.get_final_message()
    # the SDK assembles the same blocks, signature too
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in msg.content]
    deltas = [d for kind, d in kinds if kind == "content_block_delta"]
    assert deltas == ["thinking_delta"] * len(THOUGHT) + [
        "signature_delta",
        "text_delta",
        "text_delta",
    ]


def test_anthropic_thinking_then_a_call_and_omitted_thinking(claude):
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    msg = claude.messages.create(
        model="caller", max_tokens=64, messages=ASK, tools=[tool], thinking={"type": "adaptive"}
    )
    assert [b.type for b in msg.content] == ["thinking", "tool_use"]
    assert msg.stop_reason == "tool_use" and msg.content[1].input == {"city": "Oslo"}
    hidden = {"type": "enabled", "budget_tokens": 1024, "display": "omitted"}
    with claude.messages.stream(
        model="thinker", max_tokens=2048, messages=ASK, thinking=hidden
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking == ""
    assert final.content[0].signature and final.content[1].text == "Four."


def test_anthropic_thinking_sent_back_is_reasoning_and_redacted_is_dropped(claude, engines):
    turn = {
        "role": "assistant",
        "content": [
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": "2+2 is 4.", "signature": "x"},
            {"type": "text", "text": "Four."},
        ],
    }
    claude.messages.create(model="thinker", max_tokens=64, messages=[*ASK, turn, *ASK])
    sent = engines["thinker"].seen[-1].messages[1]
    assert (sent.content, sent.reasoning) == ("Four.", "2+2 is 4.")


@pytest.mark.parametrize(
    ("kw", "think", "effort"),
    [
        ({"thinking": {"type": "disabled"}}, False, None),
        ({"thinking": {"type": "adaptive"}}, None, None),
        ({"output_config": {"effort": "xhigh"}}, None, "high"),
    ],
)
def test_anthropic_switches_reach_the_engine(claude, engines, kw, think, effort):
    claude.messages.create(model="thinker", max_tokens=64, messages=ASK, **kw)
    req = engines["thinker"].seen[-1]
    assert (req.think, req.effort, req.reasoning_budget) == (think, effort, None)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "at least 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "must be greater than"),
        ({"thinking": {"type": "enabled"}}, "budget_tokens is required"),
        ({"thinking": {"type": "sometimes"}}, '"enabled", "disabled", "adaptive"'),
        ({"output_config": {"effort": "none"}}, '"low", "medium", "high", "xhigh" or "max"'),
    ],
)
def test_anthropic_bad_thinking_is_invalid_request_error(claude, kw, words):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="thinker", max_tokens=4096, messages=ASK, **kw)
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert words in e.value.body["error"]["message"]


def test_anthropic_thinking_from_a_model_that_cannot_is_refused(claude, engines):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(
            model="plain",
            max_tokens=2048,
            messages=ASK,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    assert e.value.body["error"] == {
        "type": "invalid_request_error",
        "message": '"plain" does not support thinking',
    }
    msg = claude.messages.create(
        model="plain", max_tokens=64, messages=ASK, thinking={"type": "disabled"}
    )
    assert [b.type for b in msg.content] == ["text"] and engines["plain"].seen[-1].think is False


# -- Ollama --------------------------------------------------------------------------


def test_ollama_chat_and_generate_answer_thinking_apart(olla, engines):
    r = olla.chat(model="thinker", messages=ASK, think=True)
    assert (r.message.thinking, r.message.content) == (THINKING, "Four.")
    parts = list(olla.chat(model="thinker", messages=ASK, think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == THINKING
    assert "".join(p.message.content for p in parts) == "Four."
    assert [p.message.thinking for p in parts[: len(THOUGHT)]] == list(THOUGHT)
    g = olla.generate(model="thinker", prompt="What is 2+2?", think="high")
    assert (g.thinking, g.response) == (THINKING, "Four.")
    lines = list(olla.generate(model="thinker", prompt="What is 2+2?", stream=True))
    assert "".join(x.thinking or "" for x in lines) == THINKING
    assert (engines["thinker"].seen[-2].think, engines["thinker"].seen[-2].effort) == (True, "high")


@pytest.mark.parametrize(
    ("think", "expected"),
    [(True, (True, None)), (False, (False, None)), ("low", (True, "low")), (None, (None, None))],
)
def test_ollama_think_reaches_the_engine(olla, engines, think, expected):
    olla.chat(model="thinker", messages=ASK, think=think)
    req = engines["thinker"].seen[-1]
    assert (req.think, req.effort) == expected


def test_ollama_history_thinking_is_reasoning(olla, engines):
    turn = {"role": "assistant", "content": "Four.", "thinking": "2+2 is 4."}
    olla.chat(model="thinker", messages=[*ASK, turn, *ASK])
    assert engines["thinker"].seen[-1].messages[1].reasoning == "2+2 is 4."


def test_ollama_bad_think_and_a_model_that_cannot_think(olla, engines):
    with pytest.raises(ollama.ResponseError) as e:
        olla.chat(model="thinker", messages=ASK, think="extreme")  # type: ignore[arg-type]
    assert e.value.status_code == 400
    assert e.value.error == (
        'invalid think value: "extreme" (must be "high", "medium", "low", true, or false)'
    )
    for call in (
        lambda: olla.chat(model="plain", messages=ASK, think=True),
        lambda: olla.generate(model="plain", prompt="Hi", think="low"),
    ):
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert (e.value.status_code, e.value.error) == (400, '"plain" does not support thinking')
    r = olla.chat(model="plain", messages=ASK, think=False)
    assert r.message.content == "Four." and r.message.thinking is None
    assert "thinking" in olla.show("thinker").capabilities
    assert "thinking" not in olla.show("plain").capabilities


# -- the engine's refusal, streamed too, in each dialect ------------------------------------------


def test_an_engines_refusal_is_each_dialects_error_naming_the_field_and_model(
    oai, claude, olla, engines
):
    """The engine refuses (the server leaves a model it does not run itself to
    its engine) without knowing the dialect's field; the answer names the field
    and the model as the request did, whole and streamed."""
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(
                model="plain",
                messages=ASK,
                stream=stream,
                extra_body={"chat_template_kwargs": {"enable_thinking": True}},
            )
        assert e.value.body["message"] == '"plain" does not support thinking'
        assert e.value.body["param"] == "chat_template_kwargs.enable_thinking"
        with pytest.raises(anthropic.BadRequestError) as e:
            claude.messages.create(
                model="plain",
                max_tokens=2048,
                messages=ASK,
                stream=stream,
                thinking={"type": "enabled", "budget_tokens": 1024},
            )
        assert e.value.body["error"] == {
            "type": "invalid_request_error",
            "message": '"plain" does not support thinking',
        }
        with pytest.raises(ollama.ResponseError) as e:
            reply = olla.chat(model="plain", messages=ASK, think=True, stream=stream)
            list(reply) if stream else None  # type: ignore[arg-type]
        assert (e.value.status_code, e.value.error) == (400, '"plain" does not support thinking')
    assert olla.chat(model="plain", messages=ASK, think=False).message.content == "Four."
