"""Anthropic's Messages API translated to and from core types, as tables: a request
body goes in, the core request (or the 400) comes out; scripted chunks go in, the
exact reply or stream events come out. Pure functions, no server; plus the error
shapes of the routes, in-process on stand-in engines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llmkit.api.anthropic import convert
from llmkit.api.anthropic import schemas as s
from llmkit.api.anthropic.errors import error_body, error_type
from llmkit.api.app import create_app
from llmkit.config.settings import ServeSettings
from llmkit.core.types import Chunk, Message, ToolCall, ToolCallDelta, Usage
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import (
    AuthenticationError,
    ContextLengthError,
    InvalidRequestError,
    ModelFailedError,
    ModelNotFoundError,
    ServerBusyError,
)
from tests.test_guard import app_with, call
from tests.test_stream_errors import FailingEngine

HI = [{"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"name": "get_weather", "description": "The weather", "input_schema": SCHEMA}


def request(**body: Any) -> s.MessagesRequest:
    return s.MessagesRequest.model_validate({"model": "m", "max_tokens": 8, "messages": HI, **body})


# -- requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "messages"),
    [
        ({}, (Message("user", "hi"),)),
        ({"system": "Be brief."}, (Message("system", "Be brief."), Message("user", "hi"))),
        (
            {"system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
            (Message("system", "Be brief."), Message("user", "hi")),
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    }
                ]
            },
            (Message("user", "ab"),),
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Weather in Paris?"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "Let me look."},
                            {
                                "type": "tool_use",
                                "id": "toolu_1",
                                "name": "get_weather",
                                "input": {"city": "Paris"},
                            },
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_2",
                                "is_error": True,
                                "content": [{"type": "text", "text": "no such city"}],
                            },
                            {"type": "text", "text": "Thanks."},
                        ],
                    },
                ]
            },
            (
                Message("user", "Weather in Paris?"),
                Message(
                    "assistant",
                    "Let me look.",
                    tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),),
                ),
                Message("tool", "18 C", tool_call_id="toolu_1"),
                Message("tool", "Error: no such city", tool_call_id="toolu_2"),
                Message("user", "Thanks."),
            ),
        ),
    ],
)
def test_turns_become_core_messages(body, messages):
    assert convert.from_messages_request(request(**body)).messages == messages


def test_sampling_max_tokens_and_stop_sequences():
    req = convert.from_messages_request(
        request(temperature=0, top_p=0.5, top_k=7, stop_sequences=["\n\n", "END"], max_tokens=9)
    )
    assert (req.sampling.temperature, req.sampling.top_p, req.sampling.top_k) == (0, 0.5, 7)
    assert req.max_tokens == 9 and req.stop == ("\n\n", "END")
    # Unset: left to the model's Modelfile, then Anthropic's default fills it.
    default = convert.from_messages_request(request())
    assert default.sampling.temperature is None and default.stop == ()
    assert default.settled().sampling.temperature == 1.0


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, ("auto", None, True)),
        ({"type": "auto"}, ("auto", None, True)),
        ({"type": "any"}, ("required", None, True)),
        ({"type": "tool", "name": "get_weather"}, ("required", "get_weather", True)),
        ({"type": "any", "disable_parallel_tool_use": True}, ("required", None, False)),
        ({"type": "none"}, ("none", None, True)),
    ],
)
def test_tool_choice(tool_choice, expected):
    req = convert.from_messages_request(request(tools=[WEATHER], tool_choice=tool_choice))
    assert (req.tool_choice, req.tool_name, req.parallel_tool_calls) == expected
    assert [t.name for t in req.tools] == ["get_weather"]
    assert json.loads(req.tools[0].parameters_json) == SCHEMA
    assert req.offers_tools == (expected[0] != "none")


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (
            {"tools": [{**WEATHER, "input_schema": {"type": "objekt"}}]},
            "tools.0.input_schema",
            "tools.0.input_schema is not a valid JSON Schema",
        ),
        ({"tools": [{"name": "get_weather"}]}, "tools.0.input_schema", "is required"),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools.0.type",
            "server tools",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice",
            "'nope', which is not among the tools",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice.name", "needs"),
        ({"tool_choice": {"type": "any"}}, "tool_choice", "offers no tools"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages.0.content.0.source",
            "must be {'type': 'base64'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages.0.content.0.tool_use_id",
            "required",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]},
            "messages.0.content.0",
            "needs an id, a name and an input object",
        ),
        ({"stop_sequences": [""]}, "stop_sequences", "empty"),
        ({"messages": [{"role": "user", "content": []}]}, "messages.0.content", "empty list"),
    ],
)
def test_mistakes_are_400s_naming_the_field(body, param, words):
    with pytest.raises(InvalidRequestError) as e:
        convert.from_messages_request(request(**body))
    assert e.value.param == param and words in e.value.message


def test_a_token_count_is_made_of_the_same_prompt():
    body = {"model": "m", "messages": HI, "system": "S", "tools": [WEATHER]}
    counted = convert.from_count_request(s.CountTokensRequest.model_validate(body))
    sent = convert.from_messages_request(request(system="S", tools=[WEATHER]))
    assert (counted.messages, counted.tools) == (sent.messages, sent.tools)


# -- replies ------------------------------------------------------------------------

HEAD = convert.Head("msg_1", "m")
USAGE = Usage(prompt_tokens=11, completion_tokens=4)
CALL = (
    ToolCallDelta(0, id="call_ab", name="get_weather"),
    ToolCallDelta(0, arguments='{"city": "Paris"}'),
)


@pytest.mark.parametrize(
    ("last", "reason", "sequence"),
    [
        (Chunk(finish_reason="stop"), "end_turn", None),
        (Chunk(finish_reason="stop", stop_sequence="END"), "stop_sequence", "END"),
        (Chunk(finish_reason="length"), "max_tokens", None),
        (Chunk(finish_reason="tool_calls", tool_calls=CALL), "tool_use", None),
    ],
)
def test_stop_reasons(last, reason, sequence):
    msg = convert.to_message(HEAD, "x", last)
    assert (msg.stop_reason, msg.stop_sequence) == (reason, sequence)


def test_a_reply_with_text_and_a_call():
    last = Chunk(finish_reason="tool_calls", usage=USAGE, tool_calls=CALL)
    assert convert.to_message(HEAD, "Sure.", last).model_dump() == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [
            {"type": "text", "text": "Sure."},
            {
                "type": "tool_use",
                "id": "toolu_ab",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 4},
    }
    only_call = convert.to_message(HEAD, "", last)
    assert [b.type for b in only_call.content] == ["tool_use"]
    nothing = convert.to_message(HEAD, "", Chunk(finish_reason="stop", usage=USAGE))
    assert nothing.content == [s.TextBlock(text="")]


async def _chunks(*chunks: Chunk) -> AsyncIterator[tuple[int, Chunk]]:
    for c in chunks:
        yield 0, c


def events(*chunks: Chunk, input_tokens: int = 11) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        stream = convert.to_events(HEAD, _chunks(*chunks), input_tokens=input_tokens)
        return [e async for e in stream]

    return asyncio.run(run())


def test_stream_events_text_then_a_call():
    out = events(
        Chunk("Sure"),
        Chunk("."),
        Chunk(tool_calls=CALL),
        Chunk(finish_reason="tool_calls", usage=USAGE),
    )
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 0},
        },
    }
    assert out == [
        start,
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Sure"},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "."}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_ab",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"input_tokens": 11, "output_tokens": 4},
        },
        {"type": "message_stop"},
    ]


def test_stream_events_stop_sequence_and_an_empty_reply():
    out = events(Chunk(finish_reason="stop", usage=USAGE, stop_sequence="END"))
    kinds = [e["type"] for e in out]
    assert kinds == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[4]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (InvalidRequestError("bad"), 400, "invalid_request_error"),
        (
            ContextLengthError(prompt_tokens=9, max_tokens=9, context_length=10),
            400,
            "invalid_request_error",
        ),
        (AuthenticationError("key"), 401, "authentication_error"),
        (ModelNotFoundError("x", ["m"]), 404, "not_found_error"),
        (ServerBusyError("busy"), 503, "overloaded_error"),
        (ModelFailedError("failed"), 503, "overloaded_error"),
    ],
)
def test_error_types_by_status(exc, status, kind):
    assert exc.status == status and error_type(status) == kind
    assert error_body(exc).model_dump() == {
        "type": "error",
        "error": {"type": kind, "message": exc.message},
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (403, "permission_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_the_other_statuses(status, kind):
    assert error_type(status) == kind


def _anthropic_error(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    return body["error"]["message"]


def test_the_door_refuses_in_anthropics_shape():
    """Keys, body size and rate, refused before any route reads the request."""
    body = {"model": "toy", "max_tokens": 4, "messages": HI}
    keyed = app_with(api_key="sk-right")
    r = call(keyed, "POST", "/v1/messages", json=body, headers={"x-api-key": "sk-wrong"})
    _anthropic_error(r, 401, "authentication_error")
    assert call(
        keyed, "POST", "/v1/messages", json=body, headers={"x-api-key": "sk-right"}
    ).is_success
    small = app_with(max_body_mb=0.001)
    r = call(small, "POST", "/v1/messages", json={**body, "system": "x" * 4000})
    _anthropic_error(r, 413, "request_too_large")
    limited = app_with(rate_limit=1)
    assert call(limited, "POST", "/v1/messages/count_tokens", json=body).status_code != 429
    r = call(limited, "POST", "/v1/messages/count_tokens", json=body)
    _anthropic_error(r, 429, "rate_limit_error")
    r = call(app_with(), "GET", "/v1/messages", json=body)
    _anthropic_error(r, 405, "not_found_error")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "toy", "messages": HI}, "max_tokens: Field required"),
        ({"model": "toy", "max_tokens": 0, "messages": HI}, "max_tokens"),
        ({"model": "toy", "max_tokens": 4, "messages": []}, "messages"),
        ({"model": "toy", "max_tokens": 4, "messages": HI, "temperature": 1.5}, "temperature"),
        (
            {"model": "toy", "max_tokens": 4, "messages": [{"role": "tool", "content": "x"}]},
            "messages.0.role",
        ),
    ],
)
def test_validation_errors_are_invalid_request_errors(body, words):
    r = call(app_with(), "POST", "/v1/messages", json=body)
    assert words in _anthropic_error(r, 400, "invalid_request_error")


def test_an_engine_that_cannot_count_says_so():
    body = {"model": "toy", "messages": HI}
    r = call(app_with(), "POST", "/v1/messages/count_tokens", json=body)
    assert "cannot count" in _anthropic_error(r, 400, "invalid_request_error")


def test_a_failure_mid_stream_is_the_last_event():
    """Text has been sent; then the model fails: an ``error`` event, no message_stop."""
    app = create_app(
        ServeSettings(),
        ModelRegistry([ServedModel(["m"], FailingEngine(ModelFailedError("The model failed.")))]),
    )
    body = {"model": "m", "max_tokens": 8, "messages": HI, "stream": True}
    r = call(app, "POST", "/v1/messages", json=body)
    assert r.status_code == 200
    names = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    datas = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-1] == "error" and "message_stop" not in names
    assert datas[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "The model failed."},
    }
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert text == "Hello"
