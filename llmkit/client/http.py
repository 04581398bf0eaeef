"""``Client`` and ``AsyncClient``: talk to any OpenAI-style or Ollama-style
server (llmkit, vLLM, Ollama, a hosted API), detect which it is, stream replies
as core ``Chunk``s, and learn the model's context and token counts where the
server can tell. ``Chat`` uses the blocking one, the upstream engine the other.

The questions are written once, in ``client.queries``; each class here only
drives them, with blocking calls or awaits, and reads a streamed reply with
``client.stream.ReplyReader``. Both take ``transport=`` so tests can hand them
an ``httpx.MockTransport`` or ``httpx.ASGITransport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator
from typing import Any

import httpx

from llmkit.client.bodies import Think
from llmkit.client.protocol import Dialect
from llmkit.client.queries import Queries, Query, T, Wording
from llmkit.client.stream import ReplyReader
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Message
from llmkit.errors import LlmkitError

TIMEOUT = httpx.Timeout(10.0, read=600.0)  # a long reply may pause between tokens
CHAT = Wording()  # errors worded for someone at a terminal


class Client(Queries):
    """A blocking client; ``AsyncClient`` is its twin.

    ``url`` may name the dialect (``ollama://h:11434``, ``openai://h:8000/v1``);
    ``dialect`` does too, and otherwise the server is asked.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        dialect: Dialect | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = TIMEOUT,
        wording: Wording = CHAT,
    ) -> None:
        super().__init__(url, api_key=api_key, dialect=dialect, wording=wording)
        self.http = httpx.Client(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
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
                with self.failures():
                    r = self.http.request(method, path, json=body)
                answer = self.answer(r, r.content)
            except LlmkitError as e:
                error = e

    @property
    def dialect(self) -> Dialect:
        return self._run(self.q_dialect())

    def models(self) -> list[str]:
        return self._run(self.q_models())

    def context_length(self, model: str) -> int | None:
        return self._run(self.q_context_length(model))

    def model_info(self, model: str) -> EngineInfo:
        return self._run(self.q_model_info(model))

    def running(self) -> list[dict[str, Any]]:
        return self._run(self.q_running())

    def unload(self, model: str) -> None:
        self._run(self.q_unload(model))

    def version(self) -> str:
        return self._run(self.q_version())

    def count_tokens(self, model: str, messages: list[Message]) -> int | None:
        """The prompt's length with the server's own tokenizer and template, where
        the server has ``/tokenize`` (llmkit, vLLM); None elsewhere."""
        out = self._run(self.q_tokenize(model, messages=messages))
        return None if out is None else int(out["count"])

    def stream(
        self, model: str, req: GenerateRequest, *, send: Collection[str] | None = None
    ) -> Iterator[Chunk]:
        """``req``'s reply as it comes; the last chunk has finish_reason and usage."""
        return self._stream(self.q_request(model, req, send))

    def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        think: Think = None,
    ) -> Iterator[Chunk]:
        """A chat turn; what is not given is left to the server's defaults. ``think``:
        a reasoning model's thinking on (True), off (False) or at a level ("low",
        "medium", "high"); its chunks carry the thinking in ``reasoning``."""
        return self._stream(self.q_chat(model, messages, max_tokens, temperature, think))

    def _stream(self, query: Query[tuple[Dialect, str, dict[str, Any]]]) -> Iterator[Chunk]:
        dialect, path, body = self._run(query)
        reader = ReplyReader(dialect, self.server)
        with self.failures(), self.http.stream("POST", path, json=body) as r:
            if r.status_code >= 400:
                self.answer(r, r.read())
            for line in r.iter_lines():
                yield from reader.feed(line)
                if reader.done:
                    return
        yield from reader.end()


class AsyncClient(Queries):
    """``Client`` for asyncio code."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        dialect: Dialect | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = TIMEOUT,
        wording: Wording = CHAT,
    ) -> None:
        super().__init__(url, api_key=api_key, dialect=dialect, wording=wording)
        self.http = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
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
                with self.failures():
                    r = await self.http.request(method, path, json=body)
                answer = self.answer(r, r.content)
            except LlmkitError as e:
                error = e

    async def dialect(self) -> Dialect:
        return await self._run(self.q_dialect())

    async def models(self) -> list[str]:
        return await self._run(self.q_models())

    async def context_length(self, model: str) -> int | None:
        return await self._run(self.q_context_length(model))

    async def model_info(self, model: str) -> EngineInfo:
        return await self._run(self.q_model_info(model))

    async def count_tokens(self, model: str, messages: list[Message]) -> int | None:
        out = await self._run(self.q_tokenize(model, messages=messages))
        return None if out is None else int(out["count"])

    async def tokenize(
        self,
        model: str,
        *,
        text: str | None = None,
        messages: list[Message] | None = None,
        special: bool | None = None,
    ) -> list[int] | None:
        """The token ids of a text, or of chat messages with the model's template,
        where the server has ``/tokenize``; None elsewhere."""
        out = await self._run(self.q_tokenize(model, text=text, messages=messages, special=special))
        return None if out is None else list(out["tokens"])

    async def detokenize(self, model: str, ids: list[int]) -> str | None:
        return await self._run(self.q_detokenize(model, ids))

    def stream(
        self, model: str, req: GenerateRequest, *, send: Collection[str] | None = None
    ) -> AsyncIterator[Chunk]:
        return self._stream(self.q_request(model, req, send))

    def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        think: Think = None,
    ) -> AsyncIterator[Chunk]:
        return self._stream(self.q_chat(model, messages, max_tokens, temperature, think))

    async def _stream(
        self, query: Query[tuple[Dialect, str, dict[str, Any]]]
    ) -> AsyncIterator[Chunk]:
        dialect, path, body = await self._run(query)
        reader = ReplyReader(dialect, self.server)
        with self.failures():
            async with self.http.stream("POST", path, json=body) as r:
                if r.status_code >= 400:
                    self.answer(r, await r.aread())
                async for line in r.aiter_lines():
                    for chunk in reader.feed(line):
                        yield chunk
                    if reader.done:
                        return
        for chunk in reader.end():
            yield chunk
