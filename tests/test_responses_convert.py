"""The Responses API's translations, fast: request bodies in, core values or the
400 naming the field out; scripted chunks in, the event sequence out; the
history fitted to a context; the stored turns, their branches and retention on a
real SQLite file."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from llmkit.api.openai.replies import Head
from llmkit.api.responses import convert, replies
from llmkit.api.responses.history import fit
from llmkit.api.responses.schemas import ResponseCreateRequest
from llmkit.api.responses.stream import to_events
from llmkit.core.types import Chunk, GenerateRequest, Message, ToolCall, ToolCallDelta, Usage
from llmkit.errors import InvalidRequestError, ResponseNotFoundError
from llmkit.memory.migrations import responses as R
from llmkit.memory.responses import ResponseStore
from llmkit.memory.strategies import parse_strategy
from tests.toy_engine import ToyEngine, ToyOptions

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def ids():
    n = itertools.count()
    return lambda prefix: f"{prefix}_{next(n)}"


def turn(**body):
    return convert.from_request(ResponseCreateRequest(model="m", **body), ids())


def test_a_string_is_one_user_message():
    t = turn(input="Hello")
    assert t.messages == [Message("user", "Hello")]
    assert t.items == [
        {
            "id": "msg_0",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": "Hello"}],
        }
    ]


def test_items_become_the_turns_a_template_takes():
    t = turn(
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"a": 1}'},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ]
    )
    assert t.messages == [
        Message("system", "Be brief."),
        Message("user", "Weather?"),
        Message(
            "assistant",
            "Checking.",
            tool_calls=(ToolCall("c1", "w", '{"a": 1}'), ToolCall("c2", "w", "{}")),
        ),
        Message("tool", "sunny", tool_call_id="c1"),
    ]
    assert [i["type"] for i in t.items] == ["message"] * 3 + ["function_call"] * 2 + [
        "function_call_output"
    ]
    assert t.items[2]["content"][0]["type"] == "output_text"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input.0.role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input.0.content.0.image_url",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input.0.type"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "w", "arguments": "{"}]},
            "input.0.arguments",
        ),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"input": "x", "tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "no"}},
            "tool_choice",
        ),
        ({"input": "x", "tool_choice": "required"}, "tool_choice"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format"),
        (
            {
                "input": "x",
                "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "wat"}}},
            },
            "text.format.schema",
        ),
    ],
)
def test_bad_requests_name_their_field(body, param):
    with pytest.raises(InvalidRequestError) as e:
        turn(**body)
    assert e.value.param == param and e.value.status == 400


def test_tools_choice_and_format_are_read_and_repeated():
    t = turn(
        input="x",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
    )
    assert (t.tool_choice, t.tool_name, t.parallel) == ("required", "get_weather", False)
    assert [x.name for x in t.tools] == ["get_weather"]
    assert t.sampling.response_format == "json" and json.loads(t.sampling.json_schema) == {
        "type": "object"
    }
    assert t.echo["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert t.echo["tools"][0]["parameters"] == WEATHER["parameters"]
    assert t.echo["text"]["format"]["name"] == "n"
    assert turn(input="x", text={"format": {"type": "json_object"}}).sampling.json_schema is None


def test_output_text_then_calls_and_the_status():
    last = Chunk(
        finish_reason="tool_calls",
        usage=Usage(10, 5, 2),
        tool_calls=(ToolCallDelta(0, "call_1", "w", '{"a":'), ToolCallDelta(0, None, None, "1}")),
    )
    output, reply = replies.to_output("Let me see.", last, ids())
    assert [o["type"] for o in output] == ["message", "function_call"]
    assert output[1] | {"id": "x"} == {
        "id": "x",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "w",
        "arguments": '{"a":1}',
    }
    assert reply == Message("assistant", "Let me see.", (ToolCall("call_1", "w", '{"a":1}'),))
    cut, _ = replies.to_output("Once upon", Chunk(finish_reason="length"), ids())
    assert cut[0]["status"] == "incomplete"
    r = replies.to_response(
        Head("resp_1", 5, "m"), turn(input="x"), status="incomplete", output=cut, usage=Usage(3, 4)
    )
    assert r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["usage"]["total_tokens"] == 7 and r["store"] is True


def test_input_item_pages():
    items = [{"id": f"i{n}"} for n in range(5)]
    page = replies.input_item_list(items, order="desc", limit=2, after=None)
    assert [i["id"] for i in page["data"]] == ["i4", "i3"] and page["has_more"]
    page = replies.input_item_list(items, order="asc", limit=10, after="i2")
    assert [i["id"] for i in page["data"]] == ["i3", "i4"] and not page["has_more"]
    assert (page["first_id"], page["last_id"]) == ("i3", "i4")
    with pytest.raises(InvalidRequestError):
        replies.input_item_list(items, order="asc", limit=1, after="nope")


async def _chunks(chunks):
    for c in chunks:
        yield 0, c


def test_stream_events_come_in_the_order_the_sdk_assembles():
    chunks = [
        Chunk(text="Hi"),
        Chunk(text=" there", tool_calls=(ToolCallDelta(0, "call_1", "w"),)),
        Chunk(tool_calls=(ToolCallDelta(0, None, None, '{"a": 1}'),)),
        Chunk(finish_reason="tool_calls", usage=Usage(3, 4)),
    ]
    done = []

    async def on_done(response, reply):
        done.append((response, reply))

    async def run():
        head = Head("resp_1", 5, "m")
        return [e async for e in to_events(head, turn(input="x"), _chunks(chunks), ids(), on_done)]

    events = asyncio.run(run())
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hi there"
    assert final["output"][1]["arguments"] == '{"a": 1}' and final["usage"]["output_tokens"] == 4
    assert done[0][1] == Message("assistant", "Hi there", (ToolCall("call_1", "w", '{"a": 1}'),))


def test_a_failing_stream_ends_failed_and_stores_nothing():
    async def broken():
        yield 0, Chunk(text="Hi")
        raise InvalidRequestError("the engine gave up")

    async def on_done(response, reply):
        raise AssertionError("a failed response is not stored")

    async def run():
        head = Head("resp_1", 5, "m")
        return [e async for e in to_events(head, turn(input="x"), broken(), ids(), on_done)]

    events = asyncio.run(run())
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["message"] == "the engine gave up"


class CharEngine(ToyEngine):
    """Counts one token per character of every message: a context of 200."""

    async def encode(self, req: GenerateRequest) -> list[int]:
        return [0] * sum(len(m.content) + 2 for m in req.messages or ())

    @property
    def context_length(self) -> int:
        return 200


def test_a_long_history_is_fitted_to_the_context_newest_first():
    history = []
    for n in range(30):
        history += [Message("user", f"question {n:02d}"), Message("assistant", f"answer {n:02d}")]
    history += [Message("system", "Be kind."), Message("user", "last")]

    async def run():
        return await fit(
            CharEngine(ToyOptions()),
            history,
            instructions="Rules.",
            strategy=parse_strategy("tokens"),
            max_output_tokens=50,
        )

    sent = asyncio.run(run())
    assert sent[0] == Message("system", "Rules.\n\nBe kind.")
    assert sent[-1] == Message("user", "last") and sent[-3] == Message("user", "question 29")
    assert sum(len(m.content) + 2 for m in sent) <= 150 < sum(len(m.content) + 2 for m in history)


def test_the_calls_after_the_last_question_are_kept_whole():
    history = [Message("user", "q" * 50), Message("assistant", "a" * 50)] * 3 + [
        Message("user", "weather?"),
        Message("assistant", "", (ToolCall("c", "w", "{}"),)),
        Message("tool", "sunny", tool_call_id="c"),
    ]

    async def run():
        return await fit(
            CharEngine(ToyOptions()),
            history,
            instructions=None,
            strategy=parse_strategy("tokens"),
            max_output_tokens=50,
        )

    sent = asyncio.run(run())
    assert list(sent[-3:]) == history[-3:] and len(sent) < len(history)


# -- the store ------------------------------------------------------------------------------


def _save(store, rid, previous=None, text="hi"):
    return store.save(
        rid,
        previous_id=previous,
        model="m",
        input_items=[{"id": f"in_{rid}", "type": "message"}],
        response={"id": rid, "output": [{"id": f"out_{rid}"}]},
        messages=[Message("user", text), Message("assistant", f"re {text}")],
    )


def test_a_chain_is_one_conversation_and_branches_see_their_own_ancestors(tmp_path):
    with ResponseStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        name = _save(store, "resp_a", text="What is the capital of France?")
        assert name == "what-is-the-capital-of-france-a"
        _save(store, "resp_b", "resp_a", "left")
        _save(store, "resp_c", "resp_a", "right")
        assert [t.id for t in store.chain("resp_c")] == ["resp_a", "resp_c"]
        assert [t.id for t in store.chain("resp_b")] == ["resp_a", "resp_b"]
        conv = store.get(name)
        assert (conv.turns, conv.memory) == (3, "tokens")
        store.remove("resp_a")  # the branches stay, their history now starts with them
        assert [t.id for t in store.chain("resp_c")] == ["resp_c"]
        assert [e.content for e in store.entries(name)] == ["left", "re left", "right", "re right"]
        store.remove("resp_b")
        store.remove("resp_c")
        assert store.list() == []  # the chain's conversation went with its last turn
        with pytest.raises(ResponseNotFoundError):
            store.response("resp_a")


def test_retention_evicts_the_oldest_past_the_count_and_the_age(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    with ResponseStore(url, max_count=3) as store:
        for n in range(5):
            _save(store, f"resp_{n}", f"resp_{n - 1}" if n else None, f"turn {n}")
        kept = [t.id for t in store.chain("resp_4")]
        assert kept == ["resp_2", "resp_3", "resp_4"]
        (conv,) = store.list()
        assert conv.turns == 3  # the evicted turns' transcript went too
        store.create("plain chat")  # a conversation of `llmkit chat` is none of its business
    with ResponseStore(url, max_count=2) as store:  # a tighter bound applies on opening
        assert [t.id for t in store.chain("resp_4")] == ["resp_3", "resp_4"]
    with ResponseStore(url, max_age=3600) as store:
        with store._write() as conn:  # age one of them
            old = datetime.now(UTC) - timedelta(hours=2)
            conn.execute(R.update().where(R.c.id == "resp_3").values(created_at=old))
        assert store.evict() == 1
        assert [t.id for t in store.chain("resp_4")] == ["resp_4"]
        assert sorted(c.name for c in store.list()) == ["plain chat", "turn-0-0"]
