"""MCP tools in ``/v1/responses``, driven by the official ``openai`` SDK against a
real ``llmkit serve`` with MCP servers written with the official ``mcp`` SDK
(``tests/mcp_servers.py``): tool choice forced so the bundled 135M model calls
the tool. What reached the MCP server is read from its own log, what reached the
model from the server's ``--log-requests`` log; the items and events are
validated with the ``openai`` SDK's own types (generated from OpenAI's spec)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.conftest import requests_sent

# Each test runs the model twice or so; a machine shared by many test runs needs time.
pytestmark = pytest.mark.timeout(900)
MODEL = "SmolLM2-135M-Instruct"
WEB = {"type": "mcp", "server_label": "web", "require_approval": "never"}


def force(tool: str, label: str = "web") -> dict:
    return {"type": "mcp", "server_label": label, "name": tool}


def create(client: openai.OpenAI, **kw) -> Response:
    r = client.responses.create(model=MODEL, max_output_tokens=40, temperature=0, **kw)
    body = r.model_dump()
    if body["incomplete_details"] == {"reason": "max_tool_calls"}:
        body["incomplete_details"] = None  # a reason OpenAI's enum does not list (yet)
    Response.model_validate(body)  # the SDK's own schema, strictly
    return r


def items(r: Response, kind: str) -> list:
    return [i for i in r.output if i.type == kind]


def test_a_forced_call_reaches_the_server_and_its_result_the_model(mcp):
    client = mcp.server.client()
    before = len(mcp.calls())
    r = create(
        client,
        input="What is the weather in Paris?",
        tools=[WEB, {"type": "mcp", "server_label": "down", "require_approval": "never"}],
        tool_choice=force("get_weather"),
    )
    listed, down = items(r, "mcp_list_tools")
    assert listed.server_label == "web" and listed.error is None
    # A server that is down is said so, and the response goes on without it.
    assert down.server_label == "down" and down.tools == [] and "down" in down.error
    assert {t.name for t in listed.tools} == {"get_weather", "add", "slow", "broken"}
    schema = next(t for t in listed.tools if t.name == "get_weather").input_schema
    assert schema["required"] == ["city"]
    call = items(r, "mcp_call")[0]
    assert call.name == "get_weather" and call.server_label == "web" and call.error is None
    args = json.loads(call.arguments)
    # The MCP server got the arguments parsed, as the model wrote them.
    got = mcp.calls()[before]
    assert got == {"tool": "get_weather", "arguments": args, "via": "http"}
    assert call.output == f"WEATHER-REPORT for {args['city']}: sunny, 21 C"
    # The model's next turn was given the result as the tool's output.
    sent = [
        q for q in requests_sent(mcp.server) if any(m.get("tool_call_id") for m in q["messages"])
    ]
    tool_msg = [m for m in sent[-1]["messages"] if m["role"] == "tool"][-1]
    assert tool_msg["content"] == call.output
    assert r.status in ("completed", "incomplete")
    assert r.tools[0].type == "mcp" and r.tools[0].server_label == "web"


def test_approval_asked_then_given_with_previous_response_id(mcp):
    client = mcp.server.client()
    tools = [{"type": "mcp", "server_label": "web", "allowed_tools": ["get_weather"]}]
    before = len(mcp.calls())
    first = create(client, input="Weather in Bern?", tools=tools, tool_choice=force("get_weather"))
    (asked,) = items(first, "mcp_approval_request")
    assert asked.server_label == "web" and asked.name == "get_weather"
    assert first.status == "completed" and not items(first, "mcp_call")
    assert len(mcp.calls()) == before  # nothing runs before the yes
    answer = {"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": True}
    stream = client.responses.create(
        model=MODEL,
        input=[answer],
        tools=tools,
        previous_response_id=first.id,
        max_output_tokens=40,
        temperature=0,
        stream=True,
    )
    events = list(stream)
    for e in events:  # every event as the SDK's own (spec-generated) types have it
        TypeAdapter(ResponseStreamEvent).validate_python(e.model_dump())
    types = [e.type for e in events]
    i = types.index("response.mcp_call.in_progress")
    assert types[i - 3 : i] == [
        "response.output_item.added",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
    ]
    assert types[i + 1 : i + 3] == ["response.mcp_call.completed", "response.output_item.done"]
    final = events[-1].response
    (call,) = items(final, "mcp_call")
    assert call.approval_request_id == asked.id and call.arguments == asked.arguments
    assert mcp.calls()[before]["arguments"] == json.loads(asked.arguments)
    assert call.output.startswith("WEATHER-REPORT for")
    assert requests_sent(mcp.server)[-1]["messages"][-1]["content"] == call.output
    # The stored response keeps the MCP items.
    assert [i.type for i in client.responses.retrieve(final.id).output] == [
        i.type for i in final.output
    ]


@pytest.mark.parametrize("tool", ["slow", "broken"])
def test_a_failing_call_is_an_error_and_the_model_goes_on(mcp, tool):
    client = mcp.server.client()
    r = create(
        client,
        input="Look at the text 'abc'.",
        tools=[WEB | {"allowed_tools": [tool]}],
        tool_choice=force(tool),
    )
    (listed,) = items(r, "mcp_list_tools")
    assert [t.name for t in listed.tools] == [tool]  # allowed_tools: only it is offered
    (call, *_) = items(r, "mcp_call")
    assert call.status == "failed" and call.output is None
    if tool == "slow":  # --mcp-timeout 5
        assert call.error.type == "mcp_protocol_error" and "did not answer" in call.error.message
    else:
        assert call.error.type == "mcp_tool_execution_error"
        assert "broken" in call.error.content[0]["text"]  # the SDK's words for a tool that raised
    # The model was sent only the allowed tool, and its next turn the error.
    sent = requests_sent(mcp.server)[-1]
    assert [t["name"] for t in sent["tools"]] == [tool]
    assert sent["messages"][-1]["role"] == "tool"
    metrics = httpx.get(mcp.server.url + "/metrics").text
    outcome = "timeout" if tool == "slow" else "error"
    assert f'llmkit_mcp_calls_total{{outcome="{outcome}",server="web",tool="{tool}"}}' in metrics


def test_past_the_call_limit_it_ends_incomplete(mcp):
    r = create(
        mcp.server.client(),
        input="Add 2 and 3.",
        tools=[WEB],
        tool_choice=force("add"),
        max_tool_calls=1,
    )
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_tool_calls"
    assert items(r, "mcp_call")[0].status == "completed"


def test_what_a_request_may_not_reach_is_refused(mcp):
    client = mcp.server.client()
    url = {"type": "mcp", "server_label": "x", "server_url": mcp.http_url}
    with pytest.raises(openai.BadRequestError) as e:
        create(client, input="hi", tools=[url])
    assert e.value.body["param"] == "tools.0.server_url"
    assert "--mcp-allow-urls" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        create(client, input="hi", tools=[{"type": "mcp", "server_label": "nope"}])
    assert e.value.body["param"] == "tools.0.server_label" and "web" in e.value.body["message"]
    # A tool left out of allowed_tools cannot be called, not even when forced.
    with pytest.raises(openai.BadRequestError) as e:
        create(
            client,
            input="hi",
            tools=[WEB | {"allowed_tools": ["add"]}],
            tool_choice=force("get_weather"),
        )
    assert e.value.body["param"] == "tool_choice"
