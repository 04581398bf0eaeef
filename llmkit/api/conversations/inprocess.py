"""``InProcessClient``: what ``Chat`` needs of a client, answered by this server's
own engines instead of over HTTP.

``Chat`` is blocking (the terminal and Python callers drive it from a thread of
their own); the server runs its store and strategy work in a worker thread, and
this client hands each engine call back to the event loop and waits for it there,
so the loop never blocks and the same ``Chat`` logic serves the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from llmkit.core.types import Chunk, GenerateRequest, Message, SamplingParams
from llmkit.engines.registry import ModelRegistry

T = TypeVar("T")


def generate_request(
    messages: list[Message], max_tokens: int | None, temperature: float | None
) -> GenerateRequest:
    """A chat turn; a temperature of None is the model's (its Modelfile), else the default."""
    sampling = SamplingParams(temperature=temperature)
    return GenerateRequest(messages=tuple(messages), sampling=sampling, max_tokens=max_tokens)


class InProcessClient:
    """The part of ``client.http.Client`` that ``Chat`` calls. Use it from a worker
    thread, never from the event loop itself (it would wait on itself)."""

    def __init__(self, registry: ModelRegistry, loop: asyncio.AbstractEventLoop) -> None:
        self.registry = registry
        self.loop = loop

    def _wait(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def models(self) -> list[str]:
        return self.registry.names()

    def context_length(self, model: str) -> int | None:
        return self.registry.get(model).engine.context_length

    def count_tokens(self, model: str, messages: list[Message]) -> int | None:
        engine = self.registry.get(model).engine
        ids = self._wait(engine.encode(GenerateRequest(messages=tuple(messages))))
        return None if ids is None else len(ids)

    def continuation(self, model: str, messages: list[Message], cut: str) -> list[int] | None:
        """The prompt that has the model go on from ``cut``: the messages as its
        template opens the reply, then ``cut``'s tokens; None when the engine can't
        apply a template itself."""
        engine = self.registry.get(model).engine
        ids = self._wait(engine.encode(GenerateRequest(messages=tuple(messages))))
        if ids is None:
            return None
        return ids + self._wait(engine.tokenize(cut, special=False))

    def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[Chunk]:
        """The whole reply (``Chat`` asks this only for summaries, which nobody watches)."""
        engine = self.registry.get(model).engine
        req = generate_request(messages, max_tokens, temperature)

        async def whole() -> list[Chunk]:
            return [c async for c in engine.generate(req)]

        return iter(self._wait(whole()))

    def close(self) -> None:
        pass
