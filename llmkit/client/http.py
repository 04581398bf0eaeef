"""``Client`` and ``AsyncClient``: talk to any OpenAI-style or Ollama-style
server (llmkit, vLLM, Ollama, a hosted API), detect which it is, stream replies,
and learn the model's context and token counts where the server can tell.

The two classes share everything but the transport: what goes on the wire is
decided in ``protocol``. Both take ``transport=`` so tests can hand them an
``httpx.ASGITransport`` or ``MockTransport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from llmkit.client import protocol as p
from llmkit.client.protocol import Delta, Dialect
from llmkit.core.types import Message
from llmkit.errors import InvalidRequestError, LlmkitError, UnreachableError, UpstreamError

TIMEOUT = httpx.Timeout(10.0, read=600.0)  # a long reply may pause between tokens


class _Base:
    def __init__(self, url: str, *, api_key: str | None, dialect: Dialect | None) -> None:
        if dialect is not None and dialect not in p.DIALECTS:
            raise InvalidRequestError(
                f"dialect must be one of {', '.join(p.DIALECTS)}; got '{dialect}'"
            )
        self.url = p.root_url(url)
        self._dialect = dialect
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._models: list[str] | None = None
        self._ctx: dict[str, int | None] = {}
        self._can_tokenize: bool | None = None

    def _unreachable(self, e: Exception) -> UnreachableError:
        return UnreachableError(
            f"Cannot reach {self.url} ({type(e).__name__}: {e}). Is the server running? "
            "Start one with `llmkit serve`, or give its address with --url."
        )

    def _check(self, r: httpx.Response, raw: bytes) -> None:
        if r.status_code >= 400:
            raise p.error_from(p.parse_body(raw), r.status_code, self.url)

    def _no_dialect(self) -> UpstreamError:
        return UpstreamError(
            f"{self.url} answers neither /v1/models (OpenAI-style) nor /api/tags "
            "(Ollama-style); give the right URL, or the dialect with --dialect."
        )


class Client(_Base):
    """A blocking client; ``AsyncClient`` is its twin."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        dialect: Dialect | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key=api_key, dialect=dialect)
        self.http = httpx.Client(
            base_url=self.url, headers=self.headers, timeout=TIMEOUT, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str) -> Any:
        return self._send("GET", path, None)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        try:
            r = self.http.request(method, path, json=body)
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        self._check(r, r.content)
        return p.parse_body(r.content)

    @property
    def dialect(self) -> Dialect:
        """Given, or found by asking: OpenAI-style first (llmkit answers both)."""
        if self._dialect is None:
            for dialect, path in (("openai", "/v1/models"), ("ollama", "/api/tags")):
                try:
                    listing = self._get(path)
                except UnreachableError:
                    raise
                except LlmkitError:
                    continue
                if isinstance(listing, dict) and ("data" in listing or "models" in listing):
                    self._dialect = dialect  # type: ignore[assignment]
                    break
            else:
                raise self._no_dialect()
        return self._dialect  # type: ignore[return-value]

    def models(self) -> list[str]:
        if self._models is None:
            path = "/v1/models" if self.dialect == "openai" else "/api/tags"
            self._models = p.model_names(self.dialect, self._get(path))
        return self._models

    def context_length(self, model: str) -> int | None:
        if model not in self._ctx:
            if self.dialect == "openai":
                self._ctx[model] = p.openai_context_length(self._get("/v1/models"), model)
            else:
                show = self._send("POST", "/api/show", {"model": model})
                self._ctx[model] = p.ollama_context_length(show, self._get("/api/ps"), model)
        return self._ctx[model]

    def count_tokens(self, model: str, messages: list[Message]) -> int | None:
        """The prompt's length with the server's own tokenizer and template, where
        the server has ``/tokenize`` (llmkit, vLLM); None elsewhere."""
        if self._can_tokenize is False or self.dialect != "openai":
            return None
        body = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        try:
            out = self._send("POST", "/tokenize", body)
        except LlmkitError as e:
            if e.status in (404, 405):
                self._can_tokenize = False
                return None
            raise
        self._can_tokenize = True
        return int(out["count"])

    def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[Delta]:
        dialect = self.dialect
        ctx = self.context_length(model) if dialect == "ollama" else None
        body = p.chat_body(
            dialect,
            model,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            context_length=ctx,
        )
        try:
            with self.http.stream("POST", p.chat_path(dialect), json=body) as r:
                if r.status_code >= 400:
                    self._check(r, r.read())
                for line in r.iter_lines():
                    delta = p.parse_line(dialect, line)
                    if delta is not None:
                        yield delta
                        if delta.done:
                            return
        except httpx.TransportError as e:
            raise UpstreamError(
                f"The connection to {self.url} broke mid-reply ({type(e).__name__})."
            ) from e


class AsyncClient(_Base):
    """``Client`` for asyncio code."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        dialect: Dialect | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key=api_key, dialect=dialect)
        self.http = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=TIMEOUT, transport=transport
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        try:
            r = await self.http.request(method, path, json=body)
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        self._check(r, r.content)
        return p.parse_body(r.content)

    async def dialect(self) -> Dialect:
        if self._dialect is None:
            for dialect, path in (("openai", "/v1/models"), ("ollama", "/api/tags")):
                try:
                    listing = await self._send("GET", path, None)
                except UnreachableError:
                    raise
                except LlmkitError:
                    continue
                if isinstance(listing, dict) and ("data" in listing or "models" in listing):
                    self._dialect = dialect  # type: ignore[assignment]
                    break
            else:
                raise self._no_dialect()
        return self._dialect  # type: ignore[return-value]

    async def models(self) -> list[str]:
        if self._models is None:
            d = await self.dialect()
            path = "/v1/models" if d == "openai" else "/api/tags"
            self._models = p.model_names(d, await self._send("GET", path, None))
        return self._models

    async def context_length(self, model: str) -> int | None:
        if model not in self._ctx:
            if await self.dialect() == "openai":
                listing = await self._send("GET", "/v1/models", None)
                self._ctx[model] = p.openai_context_length(listing, model)
            else:
                show = await self._send("POST", "/api/show", {"model": model})
                ps = await self._send("GET", "/api/ps", None)
                self._ctx[model] = p.ollama_context_length(show, ps, model)
        return self._ctx[model]

    async def count_tokens(self, model: str, messages: list[Message]) -> int | None:
        if self._can_tokenize is False or await self.dialect() != "openai":
            return None
        body = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        try:
            out = await self._send("POST", "/tokenize", body)
        except LlmkitError as e:
            if e.status in (404, 405):
                self._can_tokenize = False
                return None
            raise
        self._can_tokenize = True
        return int(out["count"])

    async def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[Delta]:
        dialect = await self.dialect()
        ctx = await self.context_length(model) if dialect == "ollama" else None
        body = p.chat_body(
            dialect,
            model,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            context_length=ctx,
        )
        try:
            async with self.http.stream("POST", p.chat_path(dialect), json=body) as r:
                if r.status_code >= 400:
                    self._check(r, await r.aread())
                async for line in r.aiter_lines():
                    delta = p.parse_line(dialect, line)
                    if delta is not None:
                        yield delta
                        if delta.done:
                            return
        except httpx.TransportError as e:
            raise UpstreamError(
                f"The connection to {self.url} broke mid-reply ({type(e).__name__})."
            ) from e
