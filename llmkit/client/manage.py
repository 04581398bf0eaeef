"""Model management on a server that speaks Ollama's API (llmkit, Ollama): is a
model there, and pull it there, its progress lines handed to a callback.

``llmkit run MODEL`` uses these so a model is fetched by the server that will
serve it, into that server's catalog, as ``ollama run`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from llmkit.client import protocol as p
from llmkit.errors import LlmkitError, NotFoundError, UnreachableError

#: One line of Ollama's pull stream: {"status", "digest", "total", "completed"}.
PullLine = dict[str, Any]


class ModelManager:
    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30) -> None:
        self.url, _ = p.parse_url(url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ModelManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, model: str) -> bool:
        """Whether the server serves ``model`` (or has it on disk, to serve on demand)."""
        try:
            r = self._call("POST", "/api/show", {"model": model})
        except NotFoundError:
            return False
        return r.status_code == 200

    def pull(self, model: str, on_line: Callable[[PullLine], None]) -> None:
        """Pull ``model`` on the server; an error line ends it as the error it names."""
        try:
            with self.http.stream(
                "POST", "/api/pull", json={"model": model}, timeout=httpx.Timeout(30, read=None)
            ) as r:
                if r.status_code >= 400:
                    raise p.error_from(p.parse_body(r.read()), r.status_code, self.url)
                for raw in r.iter_lines():
                    if not raw.strip():
                        continue
                    line = json.loads(raw)
                    if "error" in line:
                        raise p.error_from(line, 500, self.url)
                    on_line(line)
        except httpx.TransportError as e:
            raise UnreachableError(f"The server at {self.url} cannot be reached: {e}") from e

    def _call(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            r = self.http.request(method, path, json=body)
        except httpx.TransportError as e:
            raise UnreachableError(f"The server at {self.url} cannot be reached: {e}") from e
        if r.status_code >= 400:
            err: LlmkitError = p.error_from(p.parse_body(r.content), r.status_code, self.url)
            raise err
        return r
