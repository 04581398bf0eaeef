"""MCP servers for the tests, written with the official SDK's own server framework
(``MCPServer``, FastMCP as it is named since mcp 2): run as
``python tests/mcp_servers.py stdio LOG`` or ``... http LOG PORT``.

Their tools: ``get_weather`` (its arguments echoed back, so a test sees what
arrived parsed), ``add``, ``slow`` (sleeps past any test's timeout, whatever it
is asked), ``broken`` (raises).
Every call is appended to the file LOG (one JSON line), so a test reads what
reached the server without trusting llmkit's account of it.
"""

from __future__ import annotations

import json
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("llmkit-test")


def _log(tool: str, args: dict) -> None:
    with open(sys.argv[2], "a") as f:
        f.write(json.dumps({"tool": tool, "arguments": args, "via": sys.argv[1]}) + "\n")


@server.tool()
def get_weather(city: str) -> str:
    """The weather in a city."""
    _log("get_weather", {"city": city})
    return f"WEATHER-REPORT for {city}: sunny, 21 C"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _log("add", {"a": a, "b": b})
    return a + b


@server.tool()
async def slow(text: str) -> str:
    """Think about a text for a long while."""
    _log("slow", {"text": text})
    await anyio.sleep(600)
    return "done"


@server.tool()
def broken(text: str) -> str:
    """Always fails."""
    _log("broken", {"text": text})
    raise ValueError("the tool broke on purpose")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
