"""Anthropic's Messages API end to end: the real server with the bundled model,
driven by the official ``anthropic`` SDK and LangChain's ``ChatAnthropic``.

This SDK release no longer takes ``temperature`` as an argument (Anthropic's
newest models fix their sampling), so greedy runs pass it in ``extra_body``, as
users of other servers do; ``ChatAnthropic`` routes it there itself.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import pytest
from langchain_anthropic import ChatAnthropic

from tests.conftest import Server, start_server

MODEL = "SmolLM2-135M-Instruct"
GREEDY = {"temperature": 0}
HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": WEATHER_SCHEMA,
}
TIME = {
    "name": "get_time",
    "description": "The time in a zone",
    "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture()
def claude(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def create(c: anthropic.Anthropic, **kw: object) -> anthropic.types.Message:
    args = {"model": MODEL, "max_tokens": 24, "messages": HELLO, "extra_body": GREEDY, **kw}
    return c.messages.create(**args)  # type: ignore[call-overload]


def text_of(msg: anthropic.types.Message) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def tokenized(server: Server, messages: list[dict]) -> int:
    """The prompt's tokens by the server's own vLLM-style /tokenize (chat template)."""
    r = httpx.post(server.url + "/tokenize", json={"model": MODEL, "messages": messages})
    return r.json()["count"]


def test_create_answers_with_text_and_usage(claude, server):
    msg = create(claude, max_tokens=12)
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.model == MODEL and len(msg.content) == 1 and msg.content[0].type == "text"
    assert text_of(msg).strip()
    assert msg.stop_reason in ("end_turn", "max_tokens") and msg.stop_sequence is None
    assert 0 < msg.usage.output_tokens <= 12
    assert msg.usage.input_tokens == tokenized(server, HELLO)
    if msg.stop_reason == "max_tokens":
        assert msg.usage.output_tokens == 12


def test_sampling_fields_reach_the_sampler(claude):
    """top_k 1 leaves one candidate: at temperature 1 it must answer as greedy does."""
    greedy = text_of(create(claude))
    sampled = {"temperature": 1, "top_k": 1, "top_p": 0.9}
    for _ in range(2):
        msg = create(claude, extra_body=sampled, metadata={"user_id": "someone"})
        assert text_of(msg) == greedy


def test_a_long_answer_stops_at_max_tokens(claude):
    msg = create(claude, max_tokens=3, messages=[{"role": "user", "content": "Count to fifty."}])
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 3


def test_system_and_content_blocks_reach_the_prompt(claude, server):
    system = [{"type": "text", "text": "You are a pirate. "}, {"type": "text", "text": "Be brief."}]
    msg = create(
        claude,
        system=system,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}],
    )
    as_openai = [
        {"role": "system", "content": "You are a pirate. Be brief."},
        {"role": "user", "content": "Hello!"},
    ]
    assert msg.usage.input_tokens == tokenized(server, as_openai)
    chat = server.client().chat.completions.create(
        model=MODEL, messages=as_openai, max_tokens=24, temperature=0
    )
    assert text_of(msg) == chat.choices[0].message.content  # the same prompt, greedy


def test_stream_sends_deltas_that_make_the_final_message(claude):
    whole = create(claude)
    with claude.messages.stream(
        model=MODEL, max_tokens=24, messages=HELLO, extra_body=GREEDY
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) > 3 and "".join(deltas) == text_of(final) == text_of(whole)
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_stream_event_sequence_over_raw_http(server):
    """Without the SDK (and without an anthropic-version header): Anthropic's names."""
    body = {"model": MODEL, "max_tokens": 6, "messages": HELLO, "stream": True, **GREEDY}
    with httpx.stream("POST", server.url + "/v1/messages", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = list(r.iter_lines())
    names = [x[len("event: ") :] for x in lines if x.startswith("event: ")]
    datas = [json.loads(x[len("data: ") :]) for x in lines if x.startswith("data: ")]
    assert [d["type"] for d in datas] == names  # each event's name is its data's type
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert datas[-2]["delta"]["stop_reason"] == "max_tokens"
    assert datas[-2]["usage"]["output_tokens"] == 6


def test_stop_sequences(claude):
    whole = text_of(create(claude))
    # a stop string from the middle of the greedy answer, whatever it says
    middle = whole[len(whole) // 3 :].lstrip()
    word = middle[:4]
    assert word.strip(), whole
    msg = create(claude, stop_sequences=["zzz", word])
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == word
    assert text_of(msg) == whole[: whole.index(word)]
    with claude.messages.stream(
        model=MODEL, max_tokens=24, messages=HELLO, stop_sequences=[word], extra_body=GREEDY
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text_of(msg)
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == word


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        {"type": "any", "disable_parallel_tool_use": True},
    ],
)
def test_a_forced_call_matches_its_schema(claude, choice):
    msg = create(claude, max_tokens=80, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice)
    assert msg.stop_reason == "tool_use"
    (call,) = [b for b in msg.content if b.type == "tool_use"]
    assert call.id.startswith("toolu_")
    if choice["type"] == "tool":
        assert call.name == "get_weather"
    schema = {"get_weather": WEATHER_SCHEMA, "get_time": TIME["input_schema"]}[call.name]
    jsonschema.validate(call.input, schema)


def test_a_streamed_forced_call_arrives_as_input_json_deltas(claude):
    choice = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    kw = {"model": MODEL, "max_tokens": 80, "messages": ASK, "tools": [WEATHER]}
    with claude.messages.stream(**kw, tool_choice=choice, extra_body=GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_message()
    partial = "".join(e.partial_json for e in events if e.type == "input_json")
    (call,) = final.content
    assert call.type == "tool_use" and call.name == "get_weather"
    assert json.loads(partial) == call.input
    jsonschema.validate(call.input, WEATHER_SCHEMA)
    assert final.stop_reason == "tool_use"
    unstreamed = create(claude, max_tokens=80, messages=ASK, tools=[WEATHER], tool_choice=choice)
    assert unstreamed.content[0].input == call.input  # greedy: the same call


def test_tool_choice_none_answers_in_text(claude):
    msg = create(claude, messages=ASK, tools=[WEATHER], tool_choice={"type": "none"})
    assert [b.type for b in msg.content] == ["text"] and msg.stop_reason != "tool_use"


def test_a_tool_result_round_trip(claude, server):
    choice = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    first = create(claude, max_tokens=80, messages=ASK, tools=[WEATHER], tool_choice=choice)
    (call,) = first.content
    history = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": "It is 18 celsius, sunny.",
                }
            ],
        },
    ]
    second = create(claude, max_tokens=40, messages=history, tools=[WEATHER])
    assert second.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert second.content and second.usage.input_tokens > first.usage.input_tokens
    # What the engine was given: the call in the assistant's turn, the result as a tool turn.
    sent = [
        json.loads(line.split("request: ", 1)[1])
        for line in server.log().splitlines()
        if "It is 18 celsius, sunny." in line
    ]
    messages = sent[-1]["messages"]
    assert messages[1]["tool_calls"] == [
        {"id": call.id, "name": "get_weather", "arguments_json": json.dumps(call.input)}
    ]
    assert messages[2] == {
        "role": "tool",
        "content": "It is 18 celsius, sunny.",
        "tool_calls": [],
        "tool_call_id": call.id,
        "reasoning": "",
        "images": [],
    }


def test_count_tokens(claude):
    short = claude.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens
    longer = claude.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": HELLO[0]["content"] * 5}]
    ).input_tokens
    with_tools = claude.messages.count_tokens(model=MODEL, messages=HELLO, tools=[WEATHER])
    assert 0 < short < longer and with_tools.input_tokens > short
    assert short == create(claude, max_tokens=1).usage.input_tokens


def test_errors_come_in_anthropics_shape(claude):
    with pytest.raises(anthropic.NotFoundError) as e:
        create(claude, model="no-such-model")
    assert e.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in e.value.message and MODEL in e.value.message
    with pytest.raises(anthropic.BadRequestError) as e:  # the SDK checks it too: go around it
        claude.post(
            "/v1/messages",
            body={"model": MODEL, "messages": HELLO},
            cast_to=anthropic.types.Message,
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in e.value.message
    too_long = [{"role": "user", "content": "word " * 9000}]
    for stream in (False, True):  # a stream is refused before it starts
        with pytest.raises(anthropic.BadRequestError) as e:
            create(claude, messages=too_long, stream=stream)
        assert e.value.body["error"]["type"] == "invalid_request_error"
        assert "maximum context length is 8192 tokens" in e.value.message
    with pytest.raises(anthropic.BadRequestError) as e:
        create(claude, tools=[{**WEATHER, "input_schema": {"type": "objekt"}}])
    assert "tools.0.input_schema" in e.value.message
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-model", messages=HELLO)


def test_x_api_key_and_bearer_both_open_a_keyed_server(tmp_path):
    s = start_server(tmp_path, "--api-key", "sk-anthropic", "--parallel", "1")
    try:
        for creds in ({"api_key": "sk-anthropic"}, {"auth_token": "sk-anthropic"}):
            c = anthropic.Anthropic(base_url=s.url, max_retries=0, **creds)  # type: ignore[arg-type]
            msg = c.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
            assert msg.usage.output_tokens > 0
        wrong = anthropic.Anthropic(base_url=s.url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as e:
            wrong.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
        assert e.value.body["error"]["type"] == "authentication_error"
    finally:
        s.stop()


def test_langchain_chat_anthropic_invoke_and_stream(claude, server):
    llm = ChatAnthropic(
        base_url=server.url,
        api_key="unused",
        model=MODEL,
        max_tokens=24,
        temperature=0,
        max_retries=0,
    )
    reply = llm.invoke(HELLO[0]["content"])
    assert reply.content == text_of(create(claude))
    assert reply.usage_metadata["output_tokens"] > 0
    assert reply.usage_metadata["input_tokens"] == tokenized(server, HELLO)
    pieces = [c.content for c in llm.stream(HELLO[0]["content"])]
    text = "".join(
        p if isinstance(p, str) else "".join(x.get("text", "") for x in p) for p in pieces
    )
    assert len(pieces) > 3 and text == reply.content
