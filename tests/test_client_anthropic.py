"""The client's Anthropic dialect as tables: a core request in, the Messages API
body out (``client.anthropic``); Anthropic's streamed events in, core chunks out
(``client.stream``). The events are Anthropic's documented stream, written out;
end to end over a socket: ``test_chat_thinking``."""

from __future__ import annotations

import json

import pytest

from llmkit.client.anthropic import to_anthropic
from llmkit.client.protocol import parse_url
from llmkit.client.stream import ReplyReader
from llmkit.core.types import (
    GenerateRequest,
    Message,
    SamplingParams,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from llmkit.errors import InvalidRequestError, UpstreamError

WEATHER = Tool("weather", "The weather in a city.", '{"type": "object"}')


def test_the_url_names_the_dialect():
    assert parse_url("anthropic://h:8000") == ("http://h:8000", "anthropic")


def test_a_tool_conversation_in_anthropic_s_shape():
    turns = (
        Message("system", "Be brief."),
        Message("user", "Weather in Paris and Rome?"),
        Message(
            "assistant",
            "",
            tool_calls=(
                ToolCall("c1", "weather", '{"city": "Paris"}'),
                ToolCall("c2", "weather", '{"city": "Rome"}'),
            ),
        ),
        Message("tool", "sunny", tool_call_id="c1"),
        Message("tool", "rain", tool_call_id="c2"),
    )
    req = GenerateRequest(
        messages=turns,
        tools=(WEATHER,),
        tool_choice="required",
        tool_name="weather",
        parallel_tool_calls=False,
        stop=("END",),
        sampling=SamplingParams(temperature=0.2),
        max_tokens=50,
    )
    assert to_anthropic("m", req) == (
        "/v1/messages",
        {"model": "m", "stream": True, "max_tokens": 50, "system": "Be brief.",
         "temperature": 0.2, "stop_sequences": ["END"],
         "messages": [
             {"role": "user", "content": "Weather in Paris and Rome?"},
             {"role": "assistant", "content": [
                 {"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Paris"}},
                 {"type": "tool_use", "id": "c2", "name": "weather", "input": {"city": "Rome"}},
             ]},
             {"role": "user", "content": [  # both results in one user turn
                 {"type": "tool_result", "tool_use_id": "c1", "content": "sunny"},
                 {"type": "tool_result", "tool_use_id": "c2", "content": "rain"},
             ]},
         ],
         "tools": [{"name": "weather", "input_schema": {"type": "object"},
                    "description": "The weather in a city."}],
         "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("req", "param"),
    [
        (GenerateRequest(prompt="raw"), "prompt"),
        (GenerateRequest(messages=(Message("user", "x"),), logprobs=2), "logprobs"),
        (
            GenerateRequest(
                messages=(Message("user", "x"),), sampling=SamplingParams(response_format="json")
            ),
            "response_format",
        ),
    ],
)
def test_what_anthropic_cannot_do_is_refused_by_name(req, param):
    with pytest.raises(InvalidRequestError) as e:
        to_anthropic("m", req)
    assert e.value.param == param and "Anthropic" in e.value.message


def _events(*events: dict) -> list[str]:
    lines = []
    for e in events:
        lines += [f"event: {e['type']}", f"data: {json.dumps(e)}", ""]
    return lines


def test_a_streamed_tool_call_and_thinking_become_chunks():
    reader = ReplyReader("anthropic")
    lines = _events(
        {"type": "message_start", "message": {"usage": {"input_tokens": 7}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "Call it."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "t1", "name": "weather", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "tool_use", "id": "t2", "name": "now", "input": {}}},
        {"type": "content_block_stop", "index": 2},  # no arguments at all
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 20}},
        {"type": "message_stop"},
    )  # fmt: skip
    chunks = [c for line in lines for c in reader.feed(line)]
    assert reader.done
    assert "".join(c.reasoning for c in chunks) == "Call it."
    calls = [d for c in chunks for d in c.tool_calls]
    assert calls == [
        ToolCallDelta(0, id="t1", name="weather"),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(0, arguments='"Paris"}'),
        ToolCallDelta(1, id="t2", name="now"),
        ToolCallDelta(1, arguments="{}"),
    ]
    last = chunks[-1]
    assert last.finish_reason == "tool_calls"
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (7, 20)


def test_an_error_event_mid_stream_raises_what_it_says():
    reader = ReplyReader("anthropic", "http://h")
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamError) as e:
        reader.feed("data: " + json.dumps(error))
    assert "Overloaded" in str(e.value)
