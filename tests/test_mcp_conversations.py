"""MCP tools on llmkit's own conversations API (the chat page's and ``llmkit
chat``'s): a turn names configured servers, the calls and results stream as SSE
and are stored as messages, approval is asked and answered (yes and no). The
MCP servers are the official SDK's (``tests/mcp_servers.py``); what reached them
is read from their own log, what reached the model from ``--log-requests``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import requests_sent
from tests.test_conversations_api import events

WEATHER = {"name": "get_weather"}
# Each test runs the model twice or so; a machine shared by many test runs needs time.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture()
def http(mcp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mcp.server.url, timeout=300) as c:
        yield c


def post(http: httpx.Client, path: str, body: dict) -> list[tuple[str, dict]]:
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        return list(events(r))


def new(http: httpx.Client, name: str) -> str:
    settings = {"name": name, "max_tokens": 64, "temperature": 0}  # greedy: the call fits
    assert http.post("/conversations", json=settings).status_code == 201
    return name


def test_servers_and_their_tools_are_listed(http):
    servers = {s["name"]: s for s in http.get("/mcp/servers").json()["data"]}
    assert set(servers) == {"web", "local", "down"}
    assert servers["local"]["transport"] == "stdio" and servers["web"]["transport"] == "http"
    tools = {t["name"]: t for t in servers["local"]["tools"]}
    assert set(tools) == {"get_weather", "add", "slow", "broken"}
    assert tools["get_weather"]["input_schema"]["required"] == ["city"]
    assert servers["down"]["tools"] == [] and "down" in servers["down"]["error"]
    assert servers["web"]["require_approval"] == "always" and "url" not in servers["web"]


def test_approved_call_runs_and_its_result_reaches_the_model(http, mcp):
    name = new(http, "mcp-approve")
    before = len(mcp.calls())
    first = post(
        http,
        f"/conversations/{name}/messages",
        {"content": "Weather in Oslo?", "mcp": ["local"], "tool_choice": WEATHER},
    )
    kinds = [k for k, _ in first]
    assert kinds[0] == "user" and "tool_call" in kinds and kinds[-1] == "done"
    (asked,) = [d for k, d in first if k == "approval"]
    assert asked["server"] == "local" and asked["name"] == "get_weather"
    assert first[-1][1]["finish_reason"] == "approval_required"
    assert len(mcp.calls()) == before  # nothing ran before the yes
    # The call is stored, waiting; a reload would show it.
    stored = http.get(f"/conversations/{name}").json()["messages"]
    assert stored[-1]["tool_calls"][0] | {} == {
        "id": asked["id"],
        "server": "local",
        "name": "get_weather",
        "arguments": asked["arguments"],
    }
    rest = post(http, f"/conversations/{name}/approve", {"id": asked["id"], "approve": True})
    (result,) = [d for k, d in rest if k == "tool_result"]
    args = json.loads(asked["arguments"])
    assert mcp.calls()[before] == {"tool": "get_weather", "arguments": args, "via": "stdio"}
    assert result["output"] == f"WEATHER-REPORT for {args['city']}: sunny, 21 C"
    assert result["error"] is False and rest[-1][0] == "done"
    # The model's next turn was sent the call and its result.
    sent = requests_sent(mcp.server)[-1]["messages"]
    assert (sent[-1]["role"], sent[-1]["content"]) == ("tool", result["output"])
    assert sent[-1]["tool_call_id"] == asked["id"]
    assert sent[-2]["tool_calls"][0]["name"] == "get_weather"
    stored = http.get(f"/conversations/{name}").json()["messages"]
    tool = next(m for m in stored if m["role"] == "tool")
    assert tool["tool_call_id"] == asked["id"] and tool["tool_error"] is False
    assert tool["content"] == result["output"]


def test_denied_call_never_runs_and_the_model_is_told(http, mcp):
    name = new(http, "mcp-deny")
    first = post(
        http,
        f"/conversations/{name}/messages",
        {"content": "Weather in Rome?", "mcp": ["web"], "tool_choice": WEATHER},
    )
    (asked,) = [d for k, d in first if k == "approval"]
    before = len(mcp.calls())
    rest = post(http, f"/conversations/{name}/approve", {"id": asked["id"], "approve": False})
    (result,) = [d for k, d in rest if k == "tool_result"]
    assert result["error"] is True and "denied" in result["output"]
    assert len(mcp.calls()) == before
    sent = requests_sent(mcp.server)[-1]["messages"]
    assert sent[-1]["role"] == "tool" and "denied" in sent[-1]["content"]
    # Answered once: a second answer is refused.
    r = http.post(f"/conversations/{name}/approve", json={"id": asked["id"], "approve": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "id"


def test_unknown_server_is_refused_before_anything_is_stored(http):
    name = new(http, "mcp-unknown")
    r = http.post(f"/conversations/{name}/messages", json={"content": "hi", "mcp": ["nope"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "mcp"
    assert "web" in r.json()["error"]["message"]
    assert http.get(f"/conversations/{name}").json()["messages"] == []


def test_llmkit_chat_prints_the_call_and_asks_yes_or_no(http, mcp):
    from tests.test_chat_cli import Term

    # The terminal and the server share one store (one data directory), as on one machine.
    new(http, "cli-mcp")
    # NO_COLOR: rich's colours would sit between the words the test reads.
    t = Term(mcp.server.home, "chat", "--url", mcp.server.url, "--session", "cli-mcp",
             "--mcp", "web", "--plain", env={"NO_COLOR": "1"})  # fmt: skip
    t.p.expect(">>>")
    t.command("/tools", r"\* web \(http\): get_weather")
    t.p.expect(">>>")
    t.drain()
    before = len(mcp.calls())
    t.p.sendline("/tool get_weather What is the weather in Lima?")
    t.p.expect(r"tool call web\.get_weather\(\{", timeout=600)  # a busy CI machine
    t.p.expect(r"Run web\.get_weather\(.*\)\? \[y/N\]")
    assert len(mcp.calls()) == before  # asked before it ran
    t.p.sendline("y")
    t.p.expect("tool result get_weather: WEATHER-REPORT for", timeout=600)
    t.p.expect(">>>", timeout=600)
    assert mcp.calls()[before]["tool"] == "get_weather"
    entries = t.entries("cli-mcp")
    tool = next(e for e in entries if e.role == "tool")
    assert tool.content.startswith("WEATHER-REPORT") and not tool.tool_error
    assert t.exit() == 0
