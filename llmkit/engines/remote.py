"""``RemoteEngine``: a model served by another OpenAI-style or Ollama-style server
(a real Ollama, a vLLM, another llmkit, a hosted API), behind llmkit's API. The
upstream engine is this, pointed at a URL; the vLLM engine points it at the vLLM
child it supervises. It lives outside both engine packages so neither imports
the other.

A thin adapter over ``llmkit.client.AsyncClient``, one per engine, which knows
the dialects: it finds which one the upstream speaks, puts each request in it
whichever dialect the caller spoke (so an Ollama server gains the OpenAI API and
the other way round), reads the reply into chunks, and turns the upstream's
errors back into the llmkit errors it raised, which the caller's dialect
renders. An upstream that does not answer is a 502 naming its address within
the connect timeout, never a hang. What is left here is the engine's part:
refusing a model the upstream does not serve, stop strings held back as every
engine holds them, and winding replies down when the server stops.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

import httpx
from pydantic import Field

from llmkit.client.http import AsyncClient
from llmkit.client.protocol import Dialect, parse_url
from llmkit.client.queries import Wording
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Usage
from llmkit.engines.base import Engine
from llmkit.engines.logprobs import HeldLogprobs
from llmkit.engines.textstream import TextStream
from llmkit.errors import InvalidRequestError, ModelSpecError, UnreachableError, UpstreamError

log = logging.getLogger("llmkit.engine.remote")
CONNECT_TIMEOUT = 3.0  # a refused or silent address fails fast: a 502, not a hang
WORDING = Wording(
    subject="The upstream server {url}",
    name="the upstream server {url}",
    unreachable="The upstream server {url} is not answering ({error}).",
    no_dialect="give the dialect: openai://HOST:PORT/v1 or ollama://HOST:PORT.",
)


# The setting every engine that forwards to another server takes (upstream, vllm),
# declared once: ``upstream_timeout: UpstreamTimeout = 120.0``.
UpstreamTimeout = Annotated[
    float,
    Field(
        gt=0,
        description="Seconds the server may stay silent (before its first byte or between "
        "two) before the request fails with 504.",
    ),
]


class RemoteEngine(Engine):
    # Tools go to the server in its dialect, and its calls come back as deltas;
    # so do log-probabilities (a server that has none sends none back).
    supports_tools = True
    supports_logprobs = True

    def __init__(
        self,
        url: str,
        *,
        model: str,
        api_key: str | None = None,
        dialect: Dialect | None = None,
        engine_name: str = "upstream",
        silence: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: a scripted server
    ) -> None:
        self.url, found = parse_url(url, option="--upstream")
        self.dialect: Dialect | None = dialect or found
        self.model = model
        self.api_key = api_key
        self.engine_name = engine_name
        self.transport = transport
        # How long the server may say nothing (before its first byte, or between
        # two) before the request ends with a 504 instead of hanging.
        self.silence = silence
        self._client: AsyncClient | None = None
        self._info: EngineInfo | None = None
        self._running = 0
        self._finishing = False

    # -- lifetime -------------------------------------------------------------------

    async def start(self) -> None:
        self._client = AsyncClient(
            self.url,
            api_key=self.api_key,
            dialect=self.dialect,
            timeout=httpx.Timeout(self.silence, connect=CONNECT_TIMEOUT),
            wording=WORDING,
            transport=self.transport,
        )
        self._finishing = False
        try:
            await self._describe()
        except UnreachableError as e:
            # A proxy starts whether or not its upstream is up; requests say 502 until it is.
            log.warning("%s; requests for %s get 502 until it answers", e.message, self.model)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def finish_all(self) -> int:
        self._finishing = True
        return self._running

    def load(self) -> tuple[int, int]:
        return (self._running, 0)

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise UpstreamError(f"The {self.engine_name} engine is not started.")
        return self._client

    # -- what the upstream serves -------------------------------------------------------

    async def _describe(self) -> EngineInfo:
        """What the upstream says about the model; refuses a model it does not serve."""
        client = self.client
        names = await client.models()
        if self.dialect is None:
            self.dialect = await client.dialect()
            log.info("%s speaks the %s dialect", self.url, self.dialect)
        if names and not {self.model, f"{self.model}:latest"} & set(names):
            raise ModelSpecError(
                f"The upstream server {self.url} does not serve '{self.model}'; "
                f"it serves: {', '.join(names)}."
            )
        info = await client.model_info(self.model)
        details: dict[str, str | int] = {"upstream": self.url, "dialect": self.dialect}
        self._info = dataclasses.replace(info, engine=self.engine_name, details=details)
        return self._info

    async def _ready(self) -> Dialect:
        if self._info is None:
            await self._describe()
        return self.dialect  # type: ignore[return-value]

    @property
    def info(self) -> EngineInfo:
        if self._info is None:
            return EngineInfo(self.engine_name, self.model, 0, {"upstream": self.url})
        return self._info

    # -- the Engine interface ----------------------------------------------------------

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        await self._ready()
        # The upstream cuts at stop strings itself; TextStream also holds back a stop
        # string's start, so the caller sees the same text from every engine.
        text = TextStream(req.stop)
        held = HeldLogprobs()  # entries wait with the text TextStream holds
        last, pieces = Chunk(), 0
        self._running += 1
        try:
            async with aclosing(self.client.stream(self.model, req)) as chunks:
                async for chunk in chunks:
                    pieces += bool(chunk.text)
                    if chunk.reasoning:  # thinking, as the upstream parsed it
                        yield Chunk(reasoning=chunk.reasoning)
                    for e in chunk.logprobs:
                        held.add(e, e.piece)
                    out = text.push(chunk.text.encode("utf-8")) if chunk.text else ""
                    scored = held.release(text.sent)
                    if out or scored:
                        yield Chunk(text=out, logprobs=scored)
                    if chunk.tool_calls:
                        yield Chunk(tool_calls=chunk.tool_calls)
                    if text.stopped:
                        last = Chunk(
                            finish_reason="stop", usage=chunk.usage, stop_sequence=text.matched
                        )
                    elif self._finishing and not chunk.finish_reason:  # the server stops
                        last = Chunk(finish_reason="length")
                    else:
                        last = chunk
                    if last.finish_reason:
                        break
            rest = text.flush()
            yield Chunk(
                text=rest,
                logprobs=held.release(text.sent if text.stopped else None),
                finish_reason=last.finish_reason,
                usage=last.usage or Usage(prompt_tokens=0, completion_tokens=pieces),
                stop_sequence=last.stop_sequence,
            )
        finally:
            self._running -= 1

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        await self._ready()
        ids = await self.client.tokenize(self.model, text=text, special=special)
        if ids is None:
            raise self._cannot("/tokenize", "tokenize text")
        return ids

    async def detokenize(self, ids: list[int]) -> str:
        await self._ready()
        text = await self.client.detokenize(self.model, ids)
        if text is None:
            raise self._cannot("/detokenize", "detokenize")
        return text

    async def encode(self, req: GenerateRequest) -> list[int] | None:
        """The prompt's tokens where the upstream can tell (vLLM, llmkit: ``/tokenize``
        with the model's chat template); None for Ollama and plain OpenAI servers."""
        if isinstance(req.prompt, tuple):
            return list(req.prompt)
        await self._ready()
        messages = list(req.messages) if req.messages is not None else None
        try:
            return await self.client.tokenize(self.model, text=req.prompt, messages=messages)
        except InvalidRequestError:
            return None

    def _cannot(self, path: str, what: str) -> InvalidRequestError:
        if self.dialect != "openai":
            return InvalidRequestError(f"This model's (Ollama) server cannot {what}.")
        return InvalidRequestError(f"The upstream server {self.url} has no {path} endpoint.")
