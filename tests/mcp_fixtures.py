"""The MCP servers of the MCP tests (``tests/mcp_servers.py``): one on streamable
HTTP, one on stdio, one configured where nothing listens, and one ``llmkit
serve`` configured with all three; shared by the test modules that need them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, start_server, until

SERVERS = Path(__file__).with_name("mcp_servers.py")


@dataclass
class Mcp:
    server: Server  # llmkit serve, with the MCP servers configured
    http_url: str  # the streamable-HTTP MCP server's endpoint
    log: Path  # what reached the MCP servers, one JSON line per call

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def _up(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.TransportError:
        return False


@pytest.fixture(scope="session")
def mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mcp]:
    tmp = tmp_path_factory.mktemp("mcp")
    log = tmp / "calls.jsonl"
    port = free_port()
    http = subprocess.Popen(
        [sys.executable, str(SERVERS), "http", str(log), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        until(lambda: _up(url), 60, "the MCP test server")
        stdio = f"local={sys.executable} {SERVERS} stdio {log}"
        server = start_server(
            tmp / "llmkit",
            "--mcp",
            f"web={url}",
            stdio,
            f"down=http://127.0.0.1:{free_port()}/mcp",
            "--mcp-timeout",
            # The slow tool sleeps far longer and waits this out. Reaching a server (a
            # stdio one's start) has its own 30 s apart from it, and the other tools
            # answer in well under a second even on a busy machine (0.1-0.7 s in the
            # server's log of a loaded run).
            "5",
            "--mcp-max-steps",
            "2",
            "--log-requests",
        )
        try:
            yield Mcp(server, url, log)
        finally:
            server.stop()
    finally:
        http.terminate()
        http.wait(30)
