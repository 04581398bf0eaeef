"""``/v1/responses`` on a real ``llmkit serve`` with the bundled model, driven by
the official ``openai`` SDK: plain and streamed answers, forced tool calls and
their round trip, JSON-schema output, retrieve, delete, input items, errors."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

MODEL = "SmolLM2-135M-Instruct"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def test_create_answers_a_response(client):
    r = client.responses.create(
        model=MODEL, input="Say hello.", instructions="Be brief.", max_output_tokens=24
    )
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    assert r.status in ("completed", "incomplete") and r.output_text.strip()
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant"
    assert item.content[0].type == "output_text" and item.content[0].annotations == []
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 24
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.instructions == "Be brief." and r.store is True


def test_max_output_tokens_makes_it_incomplete(client):
    r = client.responses.create(
        model=MODEL, input="Tell me a long story about a dragon.", max_output_tokens=3
    )
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3


def test_stream_deltas_make_up_the_final_text(client):
    stream = client.responses.create(
        model=MODEL, input="Name three colours.", max_output_tokens=30, stream=True
    )
    events = list(stream)
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert deltas and deltas == final.output_text
    assert next(e for e in events if e.type == "response.output_text.done").text == deltas
    # the streamed response was stored as it ended
    assert client.responses.retrieve(final.id).output_text == deltas


def test_the_sdk_stream_helper_assembles_the_response(client):
    with client.responses.stream(
        model=MODEL, input="Reply with one word: yes or no?", max_output_tokens=200, temperature=0
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text and text


def test_a_forced_call_then_its_output_gets_an_answer(client):
    r = client.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
    )
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    answer = client.responses.create(
        model=MODEL,
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24C"}],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=30,
    )
    assert answer.output[0].type == "message" and answer.output_text.strip()
    items = client.responses.input_items.list(answer.id, order="asc").data
    assert [i.type for i in items] == ["message", "function_call", "function_call_output"]
    assert items[1].call_id == call.call_id == items[2].call_id


def test_a_streamed_call_sends_its_arguments_in_pieces(client):
    events = list(
        client.responses.create(
            model=MODEL,
            input="Weather in Oslo?",
            tools=[WEATHER],
            tool_choice="required",
            stream=True,
        )
    )
    final = events[-1].response
    calls = [o for o in final.output if o.type == "function_call"]
    assert calls and all(c.name == "get_weather" for c in calls)
    for call in calls:  # one call or several: each item's pieces make up its arguments
        pieces = [
            e.delta
            for e in events
            if e.type == "response.function_call_arguments.delta" and e.item_id == call.id
        ]
        done = next(
            e
            for e in events
            if e.type == "response.function_call_arguments.done" and e.item_id == call.id
        )
        assert "".join(pieces) == done.arguments == call.arguments
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_text_format_json_schema_is_kept(client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = client.responses.create(
        model=MODEL,
        input="Make up a person.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema}},
        max_output_tokens=60,
        temperature=0,
    )
    jsonschema.validate(json.loads(r.output_text), schema)
    assert r.text.format.type == "json_schema" and r.text.format.name == "person"


def test_retrieve_delete_and_then_not_found(client):
    r = client.responses.create(model=MODEL, input="Hi!", max_output_tokens=5, metadata={"k": "v"})
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.metadata == {"k": "v"}
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(r.id)
    assert e.value.body["code"] == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(r.id)


def test_input_items_hold_the_whole_chain(client):
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=8)
    second = client.responses.create(
        model=MODEL, input="What is my name?", previous_response_id=first.id, max_output_tokens=8
    )
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [(i.type, getattr(i, "role", None)) for i in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items[0].content[0].text == "My name is Ada."
    assert items[1].id == first.output[0].id
    newest = client.responses.input_items.list(second.id, limit=1)
    assert newest.data[0].content[0].text == "What is my name?" and newest.has_more
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.previous_response_id == first.id


def test_branches_of_one_response_each_see_their_own_turn(client):
    root = client.responses.create(model=MODEL, input="Pick an animal.", max_output_tokens=5)
    said = {}
    for word in ("Branch zebra-17.", "Branch walrus-42."):
        r = client.responses.create(
            model=MODEL, input=word, previous_response_id=root.id, max_output_tokens=5
        )
        said[word] = [i.content[0].text for i in client.responses.input_items.list(r.id).data]
    for word, texts in said.items():
        other = next(w for w in said if w != word)
        assert texts[0] == word and texts[-1] == "Pick an animal." and len(texts) == 3
        assert other not in texts


def test_store_false_keeps_nothing(client):
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=4, store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model=MODEL, input="Go on", previous_response_id=r.id)
    assert e.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            400,
            "input.0.content.0.image_url",
        ),
        ({"input": "x", "tools": [{"type": "web_search"}]}, 400, "tools.0.type"),
        ({"input": "x", "temperature": 5}, 400, "temperature"),
        ({"input": "x", "previous_response_id": "resp_missing"}, 404, "previous_response_id"),
        ({"input": "x", "model": "nope"}, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors(server, body, status, param):
    r = httpx.post(server.v1 + "/responses", json={"model": MODEL, **body}, timeout=60)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"
