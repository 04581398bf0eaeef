"""The tool loop (``api.mcp.loop``) and the MCP server settings, without a model:
the model's turns are scripted chunks (as llm's tests script a model), the MCP
servers real ``McpServers`` whose calls are counted by their ``on_call`` hook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llmkit.api.mcp import loop
from llmkit.api.mcp.servers import McpServers, RemoteTool, ServerSpec, parse_spec
from llmkit.core.types import Chunk, Message, ToolCallDelta
from llmkit.errors import ConfigError, InvalidRequestError
from tests.conftest import free_port

DOWN = ServerSpec("down", url=f"http://127.0.0.1:{free_port()}/mcp")


def calling(name: str, call_id: str) -> Chunk:
    delta = ToolCallDelta(0, id=call_id, name=name, arguments='{"a": 1}')
    return Chunk(tool_calls=(delta,), finish_reason="tool_calls")


def run(script: list[Chunk], box: loop.ToolBox, **kw) -> tuple[list, list, list]:
    """The loop's events, the messages each model turn was given, the calls made."""
    given, made = [], []
    servers = McpServers(timeout=2, on_call=lambda *a: made.append(a))

    async def generate(msgs: tuple[Message, ...], step: int) -> AsyncIterator[Chunk]:
        given.append(msgs)

        async def one() -> AsyncIterator[Chunk]:
            yield script[step]

        return one()

    async def go() -> list:
        return [e async for e in loop.run(generate, kw.pop("messages"), box, servers, **kw)]

    return asyncio.run(go()), given, made


def box(approval: bool = False) -> loop.ToolBox:
    b = loop.ToolBox()
    b.add(loop.Offered(DOWN, RemoteTool("add", "", {"type": "object"}), approval))
    return b


def test_a_tool_not_offered_is_never_called_and_the_model_goes_on():
    events, given, made = run(
        [calling("secret", "c1"), Chunk(text="ok", finish_reason="stop")],
        box(),
        messages=[Message("user", "hi")],
        max_steps=4,
    )
    assert made == []  # no server was asked
    (result,) = [e for e in events if isinstance(e, loop.Result)]
    assert result.result.error and "not a tool offered" in result.result.output
    assert given[1][-1] == Message("tool", result.result.output, tool_call_id="c1")
    assert events[-1].reason == "stop"


def test_a_server_down_is_an_error_result_and_the_step_limit_ends_the_loop():
    events, given, made = run(
        [calling("add", "c1"), calling("add", "c2")],
        box(),
        messages=[Message("user", "hi")],
        max_steps=2,
    )
    assert [m[-1] for m in made] == ["unreachable", "unreachable"]
    assert len(given) == 2 and events[-1].reason == "max_tool_steps"
    assert all(e.result.protocol for e in events if isinstance(e, loop.Result))


def test_approval_stops_the_loop_and_a_no_resumes_it_without_calling():
    messages = [Message("user", "hi")]
    events, given, made = run([calling("add", "c1")], box(True), messages=messages, max_steps=4)
    assert [type(e) for e in events[-2:]] == [loop.NeedsApproval, loop.End]
    assert events[-1].reason == "approval_required" and made == []
    # Resumed from the messages alone (the call waits at their end) and the answer.
    assert loop.pending_calls(messages)[0].id == "c1"
    events, given, made = run(
        [Chunk(text="fine", finish_reason="stop")],
        box(True),
        messages=messages,
        max_steps=4,
        decisions={"c1": False},
    )
    (result,) = [e for e in events if isinstance(e, loop.Result)]
    assert result.approved is False and "denied" in result.result.output and made == []
    assert given[0][-1].role == "tool" and events[-1].reason == "stop"


@pytest.mark.parametrize(
    ("text", "url", "command"),
    [
        ("web=http://127.0.0.1:9/mcp", "http://127.0.0.1:9/mcp", ()),
        ("fs=python -m srv --root '/a b'", None, ("python", "-m", "srv", "--root", "/a b")),
    ],
)
def test_server_specs(text, url, command):
    spec = parse_spec(text)
    assert (spec.url, spec.command) == (url, command)


@pytest.mark.parametrize("bad", ["noequals", "=http://x", "a b=http://x", "x='unclosed"])
def test_bad_server_specs_are_refused(bad):
    with pytest.raises(ConfigError):
        parse_spec(bad)


def test_a_request_reaches_a_url_only_where_the_operator_allows_and_never_a_command():
    with pytest.raises(InvalidRequestError, match="--mcp-allow-urls"):
        McpServers().for_url("x", "http://127.0.0.1:9/mcp", (), "tools.0.server_url")
    allowed = McpServers(allow_urls=True)
    assert allowed.for_url("x", "https://h/mcp", (), "p").url == "https://h/mcp"
    with pytest.raises(InvalidRequestError):
        allowed.for_url("x", "python -m evil", (), "p")
    assert McpServers(max_result=100).bounded("x" * 150).endswith("[... 50 more characters cut]")
