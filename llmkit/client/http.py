"""``Client`` and ``AsyncClient``: talk to any OpenAI-style or Ollama-style
server (llmkit, vLLM, Ollama, a hosted API), detect which it is, stream replies,
and learn the model's context and token counts where the server can tell.

Each question (which dialect? which models? how long a context?) is written once,
in ``_Queries``, as a generator that yields the HTTP calls it needs and gets their
answers back; ``Client`` drives it with blocking calls, ``AsyncClient`` with
awaits. What goes on the wire is decided in ``protocol``. Both take
``transport=`` so tests can hand them an ``httpx.ASGITransport`` or ``MockTransport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, TypeVar

import httpx

from llmkit.client import protocol as p
from llmkit.client.protocol import Delta, Dialect
from llmkit.core.types import Message
from llmkit.errors import InvalidRequestError, LlmkitError, UnreachableError, UpstreamError

TIMEOUT = httpx.Timeout(10.0, read=600.0)  # a long reply may pause between tokens
T = TypeVar("T")
# A query yields (method, path, body) and is sent the parsed answer, or an error.
Call = tuple[str, str, dict[str, Any] | None]
Query = Generator[Call, Any, T]


class _Queries:
    """Everything but the transport: shared by the blocking and asyncio clients."""

    def __init__(self, url: str, *, api_key: str | None, dialect: Dialect | None) -> None:
        if dialect is not None and dialect not in p.DIALECTS:
            raise InvalidRequestError(
                f"dialect must be one of {', '.join(p.DIALECTS)}; got '{dialect}'"
            )
        self.url = p.root_url(url)
        self._dialect = dialect
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._models: list[str] | None = None
        self._ctx: dict[str, int | None] = {}
        self._can_tokenize: bool | None = None

    def _unreachable(self, e: Exception) -> UnreachableError:
        return UnreachableError(
            f"Cannot reach {self.url} ({type(e).__name__}: {e}). Is the server running? "
            "Start one with `llmkit serve`, or give its address with --url."
        )

    def _broken(self, e: Exception) -> UpstreamError:
        return UpstreamError(f"The connection to {self.url} broke mid-reply ({type(e).__name__}).")

    def _answer(self, r: httpx.Response, raw: bytes) -> Any:
        if r.status_code >= 400:
            raise p.error_from(p.parse_body(raw), r.status_code, self.url)
        return p.parse_body(raw)

    def _q_dialect(self) -> Query[Dialect]:
        """Given, or found by asking: OpenAI-style first (llmkit answers both)."""
        if self._dialect is None:
            for dialect, path in (("openai", "/v1/models"), ("ollama", "/api/tags")):
                try:
                    listing = yield ("GET", path, None)
                except UnreachableError:
                    raise
                except LlmkitError:
                    continue
                if isinstance(listing, dict) and ("data" in listing or "models" in listing):
                    self._dialect = dialect  # type: ignore[assignment]
                    break
            else:
                raise UpstreamError(
                    f"{self.url} answers neither /v1/models (OpenAI-style) nor /api/tags "
                    "(Ollama-style); give the right URL, or the dialect with --dialect."
                )
        return self._dialect  # type: ignore[return-value]

    def _q_models(self) -> Query[list[str]]:
        if self._models is None:
            d = yield from self._q_dialect()
            listing = yield ("GET", "/v1/models" if d == "openai" else "/api/tags", None)
            self._models = p.model_names(d, listing)
        return self._models

    def _q_context_length(self, model: str) -> Query[int | None]:
        if model not in self._ctx:
            if (yield from self._q_dialect()) == "openai":
                listing = yield ("GET", "/v1/models", None)
                self._ctx[model] = p.openai_context_length(listing, model)
            else:
                show = yield ("POST", "/api/show", {"model": model})
                ps = yield ("GET", "/api/ps", None)
                self._ctx[model] = p.ollama_context_length(show, ps, model)
        return self._ctx[model]

    def _q_count_tokens(self, model: str, messages: list[Message]) -> Query[int | None]:
        """The prompt's length with the server's own tokenizer and template, where
        the server has ``/tokenize`` (llmkit, vLLM); None elsewhere."""
        if self._can_tokenize is False or (yield from self._q_dialect()) != "openai":
            return None
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        try:
            out = yield ("POST", "/tokenize", {"model": model, "messages": msgs})
        except LlmkitError as e:
            if e.status in (404, 405):
                self._can_tokenize = False
                return None
            raise
        self._can_tokenize = True
        return int(out["count"])

    def _q_chat_body(
        self, model: str, messages: list[Message], max_tokens: int | None, temperature: float | None
    ) -> Query[tuple[Dialect, dict[str, Any]]]:
        dialect = yield from self._q_dialect()
        # Ollama sizes its context by num_ctx: ask for the one we budget for.
        ctx = (yield from self._q_context_length(model)) if dialect == "ollama" else None
        body = p.chat_body(
            dialect,
            model,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            context_length=ctx,
        )
        return dialect, body


class Client(_Queries):
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

    def _run(self, query: Query[T]) -> T:
        answer: Any = None
        error: LlmkitError | None = None
        while True:
            try:
                method, path, body = query.throw(error) if error else query.send(answer)
            except StopIteration as done:
                return done.value
            answer, error = None, None
            try:
                r = self.http.request(method, path, json=body)
                answer = self._answer(r, r.content)
            except httpx.TransportError as e:
                error = self._unreachable(e)
            except LlmkitError as e:
                error = e

    @property
    def dialect(self) -> Dialect:
        return self._run(self._q_dialect())

    def models(self) -> list[str]:
        return self._run(self._q_models())

    def context_length(self, model: str) -> int | None:
        return self._run(self._q_context_length(model))

    def count_tokens(self, model: str, messages: list[Message]) -> int | None:
        return self._run(self._q_count_tokens(model, messages))

    def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[Delta]:
        dialect, body = self._run(self._q_chat_body(model, messages, max_tokens, temperature))
        try:
            with self.http.stream("POST", p.chat_path(dialect), json=body) as r:
                if r.status_code >= 400:
                    self._answer(r, r.read())
                for line in r.iter_lines():
                    delta = p.parse_line(dialect, line)
                    if delta is not None:
                        yield delta
                        if delta.done:
                            return
        except httpx.ConnectError as e:
            raise self._unreachable(e) from e
        except httpx.TransportError as e:
            raise self._broken(e) from e


class AsyncClient(_Queries):
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

    async def _run(self, query: Query[T]) -> T:
        answer: Any = None
        error: LlmkitError | None = None
        while True:
            try:
                method, path, body = query.throw(error) if error else query.send(answer)
            except StopIteration as done:
                return done.value
            answer, error = None, None
            try:
                r = await self.http.request(method, path, json=body)
                answer = self._answer(r, r.content)
            except httpx.TransportError as e:
                error = self._unreachable(e)
            except LlmkitError as e:
                error = e

    async def dialect(self) -> Dialect:
        return await self._run(self._q_dialect())

    async def models(self) -> list[str]:
        return await self._run(self._q_models())

    async def context_length(self, model: str) -> int | None:
        return await self._run(self._q_context_length(model))

    async def count_tokens(self, model: str, messages: list[Message]) -> int | None:
        return await self._run(self._q_count_tokens(model, messages))

    async def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[Delta]:
        query = self._q_chat_body(model, messages, max_tokens, temperature)
        dialect, body = await self._run(query)
        try:
            async with self.http.stream("POST", p.chat_path(dialect), json=body) as r:
                if r.status_code >= 400:
                    self._answer(r, await r.aread())
                async for line in r.aiter_lines():
                    delta = p.parse_line(dialect, line)
                    if delta is not None:
                        yield delta
                        if delta.done:
                            return
        except httpx.ConnectError as e:
            raise self._unreachable(e) from e
        except httpx.TransportError as e:
            raise self._broken(e) from e
