"""Table tests of tool calling in both dialects' ``convert``: request bodies in,
core requests (or the 400 naming the field) out; scripted chunks with call
deltas in, the exact reply objects and stream events out. No server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from llmkit.api.ollama import convert as oconv
from llmkit.api.ollama import replies as oreplies
from llmkit.api.ollama import schemas as os_
from llmkit.api.openai import convert, replies
from llmkit.api.openai import schemas as s
from llmkit.core.types import Chunk, Message, ToolCall, ToolCallDelta, Usage
from llmkit.errors import InvalidRequestError

FN = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}
TOOL = {"type": "function", "function": FN}
USER = [{"role": "user", "content": "hi"}]
CALL = (ToolCallDelta(0, id="call_1", name="get_weather"), ToolCallDelta(0, arguments='{"a": 1}'))
HEAD = replies.Head("chatcmpl-1", 1, "m")
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def openai_req(**body: Any):
    return convert.from_chat_request(
        s.ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **body})
    )


@pytest.mark.parametrize(
    ("body", "choice", "name", "parallel"),
    [
        ({"tools": [TOOL]}, "auto", None, True),
        ({"tools": [TOOL], "tool_choice": "none"}, "none", None, True),
        ({"tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False},
         "required", None, False),
        ({"tools": [TOOL], "tool_choice": NAMED}, "required", "get_weather", True),
        ({"functions": [FN], "function_call": {"name": "get_weather"}}, "required", "get_weather",
         False),
        ({"functions": [FN]}, "auto", None, False),
    ],
)  # fmt: skip
def test_openai_tool_fields(body, choice, name, parallel):
    req = openai_req(**body)
    assert [t.name for t in req.tools] == ["get_weather"]
    assert (req.tool_choice, req.tool_name, req.parallel_tool_calls) == (choice, name, parallel)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
         "tool_choice"),
        ({"functions": [FN], "function_call": {"name": "x"}}, "function_call"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]},
         "tools.0.function.parameters"),
    ],
)  # fmt: skip
def test_openai_tool_errors_name_the_field(body, param):
    with pytest.raises(InvalidRequestError) as e:
        openai_req(**body)
    assert e.value.param == param


def test_openai_history_keeps_calls_and_results():
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]  # fmt: skip
    req = openai_req(messages=messages)
    assert req.messages[1:] == (
        Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{}"),)),
        Message("tool", "sunny", tool_call_id="c1"),
    )


def test_openai_reply_with_calls_has_null_content():
    last = Chunk(finish_reason="tool_calls", usage=Usage(3, 4), tool_calls=CALL)
    out = replies.to_chat_completion(HEAD, [("", last)]).model_dump()
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"a": 1}'}}
        ],
    }  # fmt: skip
    legacy = replies.to_chat_completion(HEAD, [("", last)], legacy=True).model_dump()
    assert legacy["choices"][0]["finish_reason"] == "function_call"
    assert legacy["choices"][0]["message"]["function_call"] == {
        "name": "get_weather",
        "arguments": '{"a": 1}',
    }


def _drain(it: AsyncIterator[Any]) -> list[Any]:
    async def go() -> list[Any]:
        return [x async for x in it]

    return asyncio.run(go())


async def _scripted(*chunks: Chunk) -> AsyncIterator[tuple[int, Chunk]]:
    for c in chunks:
        yield 0, c


def test_openai_stream_sends_the_call_head_then_its_arguments():
    chunks = _scripted(Chunk(tool_calls=CALL, finish_reason="tool_calls", usage=Usage(1, 2)))
    events = _drain(replies.to_chat_chunks(HEAD, chunks, n=1, include_usage=False))
    got = [(e.model_dump()["choices"][0]["delta"], e.choices[0].finish_reason) for e in events]
    assert got == [
        ({"role": "assistant", "content": ""}, None),
        ({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}, None),
        ({}, "tool_calls"),
    ]  # fmt: skip


# -- Ollama -------------------------------------------------------------------------


def ollama_req(**body: Any):
    return oconv.from_chat_request(
        os_.ChatRequest.model_validate({"model": "m", "messages": USER, **body})
    )


@pytest.mark.parametrize(
    ("extra", "choice", "name"),
    [
        ({}, "auto", None),
        ({"tool_choice": "required"}, "required", None),
        ({"tool_choice": "none"}, "none", None),
        ({"tool_choice": NAMED}, "required", "get_weather"),
    ],
)  # fmt: skip
def test_ollama_tools_and_the_tool_choice_extension(extra, choice, name):
    req = ollama_req(tools=[TOOL], **extra)
    assert [t.name for t in req.tools] == ["get_weather"]
    assert (req.tool_choice, req.tool_name) == (choice, name)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [TOOL], "tool_choice": 7}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"function": {"name": "x"}}}, "tool_choice"),
        ({"tools": [{"type": "function"}]}, "tools.0.function"),
    ],
)
def test_ollama_tool_errors_name_the_field(body, param):
    with pytest.raises((InvalidRequestError, ValueError)) as e:
        ollama_req(**body)
    if isinstance(e.value, InvalidRequestError):
        assert e.value.param == param


def test_ollama_history_calls_carry_objects():
    messages = [
        *USER,
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "rain"},
    ]  # fmt: skip
    req = ollama_req(messages=messages)
    assert req.messages[1].tool_calls == (ToolCall("call_1_0", "get_weather", '{"city": "Oslo"}'),)
    assert req.messages[2] == Message("tool", "rain")


def _stamped(*chunks: Chunk) -> AsyncIterator[oreplies.Stamped]:
    async def gen() -> AsyncIterator[oreplies.Stamped]:
        for i, c in enumerate(chunks):
            yield oreplies.Stamped(c, 2_000 + i, datetime(2025, 1, 1, tzinfo=UTC))

    return gen()


def test_ollama_replies_with_calls_streaming_and_not():
    timing = oreplies.Timing(start=1_000, first=1_500)
    call = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"a": 1}}}
    chunks = (Chunk(tool_calls=CALL), Chunk(finish_reason="tool_calls", usage=Usage(1, 2)))
    lines = [json.loads(oreplies.to_ndjson_line(x)) for x in _drain(
        oreplies.to_chat_lines("m", timing, _stamped(*chunks)))]  # fmt: skip
    assert lines[0]["message"] == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert lines[1]["done"] and lines[1]["done_reason"] == "stop"
    assert "tool_calls" not in lines[1]["message"]
    whole = asyncio.run(oreplies.to_chat_response("m", timing, _stamped(*chunks))).model_dump()
    assert whole["message"]["tool_calls"] == [call] and whole["done_reason"] == "stop"


def test_ollama_takes_tool_choice_from_options_too():
    req = ollama_req(tools=[TOOL], options={"tool_choice": "required", "temperature": 0})
    assert req.tool_choice == "required" and req.sampling.temperature == 0
