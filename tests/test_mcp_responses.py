"""MCP tools in ``/v1/responses``, driven by the official ``openai`` SDK against a
real ``llmkit serve`` with MCP servers written with the official ``mcp`` SDK
(``tests/mcp_servers.py``): tool choice forced so the bundled 135M model calls
the tool. What reached the MCP server is read from its own log, what reached the
model from the server's ``--log-requests`` log; the items and events are
validated with the ``openai`` SDK's own types (generated from OpenAI's spec)."""

from __future__ import annotations

import json

import openai
from openai.types.responses import Response

from tests.conftest import requests_sent

MODEL = "SmolLM2-135M-Instruct"
WEB = {"type": "mcp", "server_label": "web", "require_approval": "never"}


def force(tool: str, label: str = "web") -> dict:
    return {"type": "mcp", "server_label": label, "name": tool}


def create(client: openai.OpenAI, **kw) -> Response:
    r = client.responses.create(model=MODEL, max_output_tokens=48, temperature=0, **kw)
    Response.model_validate(r.model_dump())  # the SDK's own schema, strictly
    return r


def items(r: Response, kind: str) -> list:
    return [i for i in r.output if i.type == kind]


def test_a_forced_call_reaches_the_server_and_its_result_the_model(mcp):
    client = mcp.server.client()
    before = len(mcp.calls())
    r = create(
        client,
        input="What is the weather in Paris?",
        tools=[WEB],
        tool_choice=force("get_weather"),
    )
    (listed,) = items(r, "mcp_list_tools")
    assert listed.server_label == "web" and listed.error is None
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
