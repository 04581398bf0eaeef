"""Table tests: a scripted list of chunks carrying thinking in, each dialect's
exact answer and stream events out, whole and streamed. No server: the
converters are pure. Each object is also read back with the dialect's official
SDK types (``openai``, ``anthropic``, ``ollama``), which are generated from the
published API descriptions."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

import anthropic.types as at
import ollama
import openai.types.chat as oc
import openai.types.responses as orr
from pydantic import TypeAdapter

from llmkit.api.anthropic import convert as aconv
from llmkit.api.anthropic.thinking import signature
from llmkit.api.ollama import replies
from llmkit.api.openai import replies as chat
from llmkit.api.responses import convert as rconv
from llmkit.api.responses import replies as rreplies
from llmkit.api.responses.schemas import ResponseCreateRequest
from llmkit.api.responses.stream import to_events
from llmkit.core.types import Chunk, Message, ToolCall, ToolCallDelta, Usage

THOUGHT = ("Two and", " two make four.")
THINKING = "".join(THOUGHT)
USAGE = Usage(5, 6, reasoning_tokens=3)
# Thinking, then the answer in two pieces (the first chunk where thinking ends
# carries the answer's start, as a parser's push does).
SCRIPT = (
    Chunk(reasoning=THOUGHT[0]),
    Chunk(reasoning=THOUGHT[1], text="Four"),
    Chunk(text="."),
    Chunk(finish_reason="stop", usage=USAGE),
)
CALLING = (
    Chunk(reasoning="Weather first."),
    Chunk(tool_calls=(ToolCallDelta(0, "call_1", "get_weather"),)),
    Chunk(tool_calls=(ToolCallDelta(0, arguments='{"city": "Oslo"}'),)),
    Chunk(finish_reason="tool_calls", usage=USAGE),
)


async def _scripted(chunks: Iterable[Chunk]) -> AsyncIterator[tuple[int, Chunk]]:
    for c in chunks:
        yield 0, c


def _drain(events: AsyncIterator[Any]) -> list[Any]:
    async def go() -> list[Any]:
        return [e async for e in events]

    return asyncio.run(go())


def whole(chunks: Iterable[Chunk]) -> tuple[str, Chunk]:
    """What ``collect`` hands a route: the text, and the last chunk with the whole
    thinking and every call."""
    chunks = list(chunks)
    last = chunks[-1]
    return "".join(c.text for c in chunks), Chunk(
        reasoning="".join(c.reasoning for c in chunks),
        tool_calls=tuple(d for c in chunks for d in c.tool_calls),
        finish_reason=last.finish_reason,
        usage=last.usage,
    )


# -- OpenAI chat ---------------------------------------------------------------------

HEAD = chat.Head("chatcmpl-1", 1700000000, "m")


def test_openai_chat_stream_sends_reasoning_content_deltas_before_the_text():
    events = _drain(chat.to_chat_chunks(HEAD, _scripted(SCRIPT), n=1, include_usage=True))
    data = [json.loads(chat.to_sse_data(e, include_usage=True)) for e in events]
    deltas = [(d["choices"][0]["delta"], d["choices"][0]["finish_reason"]) for d in data[:-1]]
    assert deltas == [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": THOUGHT[0]}, None),
        ({"reasoning_content": THOUGHT[1]}, None),
        ({"content": "Four"}, None),
        ({"content": "."}, None),
        ({}, "stop"),
    ]
    assert data[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}
    for d in data:
        oc.ChatCompletionChunk.model_validate(d)


def test_openai_chat_whole_answer_has_reasoning_content_and_its_tokens():
    answer = chat.to_chat_completion(HEAD, [whole(SCRIPT)]).model_dump()
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Four.",
        "refusal": None,
        "reasoning_content": THINKING,
    }
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}
    called = chat.to_chat_completion(HEAD, [whole(CALLING)]).model_dump()
    message = called["choices"][0]["message"]
    assert message["content"] is None and message["reasoning_content"] == "Weather first."
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'
    parsed = oc.ChatCompletion.model_validate(answer)
    assert parsed.usage.completion_tokens_details.reasoning_tokens == 3
    # no thinking: no key at all, as before
    plain = chat.to_chat_completion(HEAD, [("Hi", Chunk(finish_reason="stop"))]).model_dump()
    assert "reasoning_content" not in plain["choices"][0]["message"]


def test_openai_usage_counts_each_choices_thinking():
    results = [whole(SCRIPT), whole(SCRIPT)]
    usage = chat.to_chat_completion(HEAD, results).model_dump()["usage"]
    assert usage["completion_tokens"] == 12 and usage["prompt_tokens"] == 5
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 6}


# -- Responses -----------------------------------------------------------------------


def _turn(**body: Any) -> rconv.Turn:
    return rconv.from_request(ResponseCreateRequest(model="m", input="x", **body), _ids())


def _ids() -> Any:
    n = itertools.count()
    return lambda prefix: f"{prefix}_{next(n)}"


def test_responses_stream_opens_a_reasoning_item_before_the_message():
    stored: list[tuple[dict[str, Any], Message]] = []

    async def keep(response: dict[str, Any], reply: Message) -> None:
        stored.append((response, reply))

    head = chat.Head("resp_1", 5, "m")
    turn = _turn(reasoning={"effort": "low"})
    events = _drain(to_events(head, turn, _scripted(SCRIPT), _ids(), keep))
    shown = [
        (
            e["type"],
            e.get("item_id") or e.get("item", {}).get("id"),
            e.get("delta") or e.get("text"),
        )
        for e in events[2:-1]
    ]
    assert shown == [
        ("response.output_item.added", "rs_0", None),
        ("response.content_part.added", "rs_0", None),
        ("response.reasoning_text.delta", "rs_0", THOUGHT[0]),
        ("response.reasoning_text.delta", "rs_0", THOUGHT[1]),
        ("response.reasoning_text.done", "rs_0", THINKING),
        ("response.content_part.done", "rs_0", None),
        ("response.output_item.done", "rs_0", None),
        ("response.output_item.added", "msg_1", None),
        ("response.content_part.added", "msg_1", None),
        ("response.output_text.delta", "msg_1", "Four"),
        ("response.output_text.delta", "msg_1", "."),
        ("response.output_text.done", "msg_1", "Four."),
        ("response.content_part.done", "msg_1", None),
        ("response.output_item.done", "msg_1", None),
    ]
    assert [e["output_index"] for e in events[2:9]] == [0] * 7
    assert [e["output_index"] for e in events[9:-1]] == [1] * 7
    assert events[3]["part"] == {"type": "reasoning_text", "text": ""}
    final = events[-1]["response"]
    assert final["output"][0] == {
        "id": "rs_0",
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": THINKING}],
        "status": "completed",
    }
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}
    assert final["reasoning"] == {"effort": "low", "summary": None}
    assert stored[0][1] == Message("assistant", "Four.", reasoning=THINKING)
    adapter: TypeAdapter[Any] = TypeAdapter(orr.ResponseStreamEvent)
    for e in events:
        adapter.validate_python(e)
    assert orr.Response.model_validate(final).output[0].type == "reasoning"


def test_responses_whole_output_and_a_cut_in_the_thinking():
    output, reply = rreplies.to_output(*whole(CALLING), _ids())
    assert [(o["type"], o["id"]) for o in output] == [
        ("reasoning", "rs_0"),
        ("function_call", "fc_1"),
    ]
    assert reply == Message(
        "assistant",
        "",
        (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),),
        reasoning="Weather first.",
    )
    cut, _ = rreplies.to_output("", Chunk(reasoning="Hmm", finish_reason="length"), _ids())
    assert [(o["type"], o["status"]) for o in cut] == [
        ("reasoning", "incomplete"),
        ("message", "incomplete"),
    ]
    response = rreplies.to_response(
        chat.Head("resp_1", 5, "m"), _turn(), status="incomplete", output=cut, usage=USAGE
    )
    assert orr.Response.model_validate(response).output[0].status == "incomplete"


# -- Anthropic -----------------------------------------------------------------------

AHEAD = aconv.Head("msg_1", "m")


def test_anthropic_stream_thinking_block_signed_before_its_stop():
    events = _drain(aconv.to_events(AHEAD, _scripted(SCRIPT), input_tokens=5))
    blocks = events[2:-2]
    assert blocks == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": THOUGHT[0]},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": THOUGHT[1]},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": signature(THINKING)},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Four"},
        },
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "."}},
        {"type": "content_block_stop", "index": 1},
    ]
    assert events[-2]["usage"] == {
        "input_tokens": 5,
        "output_tokens": 6,
        "output_tokens_details": {"thinking_tokens": 3},
    }
    adapter: TypeAdapter[Any] = TypeAdapter(at.RawMessageStreamEvent)
    for e in events:
        if e["type"] != "ping":  # the SDK reads pings apart from its typed events
            adapter.validate_python(e)


def test_anthropic_omitted_thinking_streams_no_text_but_the_signature():
    events = _drain(aconv.to_events(AHEAD, _scripted(SCRIPT), input_tokens=5, shown=False))
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert [d["type"] for d in deltas] == ["signature_delta", "text_delta", "text_delta"]
    assert deltas[0]["signature"] == signature(THINKING)


def test_anthropic_whole_message_thinking_first():
    msg = aconv.to_message(AHEAD, *whole(SCRIPT)).model_dump()
    assert msg["content"] == [
        {"type": "thinking", "thinking": THINKING, "signature": signature(THINKING)},
        {"type": "text", "text": "Four."},
    ]
    assert msg["usage"]["output_tokens_details"] == {"thinking_tokens": 3}
    called = aconv.to_message(AHEAD, *whole(CALLING)).model_dump()
    assert [b["type"] for b in called["content"]] == ["thinking", "tool_use"]
    assert called["stop_reason"] == "tool_use"
    at.Message.model_validate(msg)
    hidden = aconv.to_message(AHEAD, *whole(SCRIPT), shown=False).model_dump()
    assert hidden["content"][0] == {
        "type": "thinking",
        "thinking": "",
        "signature": signature(THINKING),
    }
    # a reply with no thinking: no block, and no usage details, as before
    plain = aconv.to_message(AHEAD, "Hi", Chunk(finish_reason="stop", usage=Usage(1, 1)))
    assert [b.type for b in plain.content] == ["text"]
    assert "output_tokens_details" not in plain.model_dump()["usage"]


def test_signatures_differ_with_the_thinking():
    assert signature("a") != signature("b") and len(signature("")) == 64


# -- Ollama --------------------------------------------------------------------------

AT = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TIMING = replies.Timing(start=1_000, first=1_500)


def _stamped(chunks: Iterable[Chunk]) -> AsyncIterator[replies.Stamped]:
    async def gen() -> AsyncIterator[replies.Stamped]:
        for i, c in enumerate(chunks):
            yield replies.Stamped(c, 2_000 + i, AT)

    return gen()


def test_ollama_chat_lines_carry_thinking_apart():
    lines = _drain(replies.to_chat_lines("m", TIMING, _stamped(SCRIPT)))
    said = [line.model_dump()["message"] for line in lines]
    assert said == [
        {"role": "assistant", "content": "", "thinking": THOUGHT[0]},
        {"role": "assistant", "content": "Four", "thinking": THOUGHT[1]},
        {"role": "assistant", "content": "."},
        {"role": "assistant", "content": ""},
    ]
    for line in lines:
        ollama.ChatResponse.model_validate(line.model_dump())
    answer = asyncio.run(replies.to_chat_response("m", TIMING, _stamped(SCRIPT))).model_dump()
    assert answer["message"] == {"role": "assistant", "content": "Four.", "thinking": THINKING}
    assert ollama.ChatResponse.model_validate(answer).message.thinking == THINKING


def test_ollama_generate_lines_carry_thinking_apart():
    lines = _drain(replies.to_generate_lines("m", TIMING, _stamped(SCRIPT), None))
    dumped = [line.model_dump() for line in lines]
    assert [(d["response"], d.get("thinking")) for d in dumped] == [
        ("", THOUGHT[0]),
        ("Four", THOUGHT[1]),
        (".", None),
        ("", None),
    ]
    for d in dumped:
        ollama.GenerateResponse.model_validate(d)
    answer = asyncio.run(replies.to_generate_response("m", TIMING, _stamped(SCRIPT), [1, 2]))
    assert (answer.response, answer.thinking) == ("Four.", THINKING)
