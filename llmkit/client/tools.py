"""A client of an llmkit server's MCP tools, for ``llmkit chat``: the MCP servers
the server is configured with (``GET /mcp/servers``), and a turn of a stored
conversation that may use them (``POST /conversations/{name}/messages`` with
``mcp``, ``POST .../approve``), read as the server-sent events it streams.
The server runs the tools; this side shows the calls and asks the user."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from llmkit.client.protocol import error_from
from llmkit.errors import ConversationNotFoundError, NotFoundError

Event = tuple[str, dict[str, Any]]


class ToolTurns:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 600) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _check(self, r: httpx.Response) -> None:
        if r.status_code >= 400:
            r.read()
            try:
                body = r.json()
            except ValueError:
                body = r.text
            raise error_from(body, r.status_code, "the llmkit server")

    def servers(self) -> list[dict[str, Any]]:
        """The server's MCP servers: name, transport, require_approval, tools, error."""
        r = self.http.get("/mcp/servers")
        self._check(r)
        return r.json()["data"]

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[Event]:
        with self.http.stream("POST", path, json=body) as r:
            self._check(r)
            kind = "message"
            for line in r.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    yield kind, json.loads(line[5:])
                    kind = "message"

    def send(
        self, name: str, text: str, servers: list[str], tool: str | None = None
    ) -> Iterator[Event]:
        """A user turn that may use ``servers``' tools (``tool``: the model must call it
        first). A conversation the server's store lacks is made there first."""
        body: dict[str, Any] = {"content": text, "mcp": servers}
        if tool is not None:
            body["tool_choice"] = {"name": tool}
        path = f"/conversations/{quote(name, safe='')}/messages"
        try:
            yield from self._stream(path, body)
        except (ConversationNotFoundError, NotFoundError):
            self._check(self.http.post("/conversations", json={"name": name}))
            yield from self._stream(path, body)

    def approve(self, name: str, call_id: str, approve: bool) -> Iterator[Event]:
        """The user's answer to a call that waits; the rest of the turn."""
        path = f"/conversations/{quote(name, safe='')}/approve"
        yield from self._stream(path, {"id": call_id, "approve": approve})
