"""A model served with another tool's preset (Ollama's manifest layers): its
system prompt goes first in a chat that brings none, and its stop strings are
added to each request's own, as Ollama does with a Modelfile's ``SYSTEM`` and
``PARAMETER stop``. Everything else is the wrapped engine's.

Sampling parameters (temperature, top_k...) are not applied here: the wire
layers fill every unset one with its default before the engine sees the
request, so a request that set temperature 0.8 and one that set nothing look
alike. They become Ollama requests' defaults instead, before that filling, as a
made model's parameters do (``serving/build.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from llmkit.core.types import Chunk, EmbedRequest, EmbedResult, EngineInfo, GenerateRequest, Message
from llmkit.engines.base import Engine
from llmkit.models.preset import Preset


def apply_preset(req: GenerateRequest, preset: Preset) -> GenerateRequest:
    changes: dict[str, Any] = {}
    if preset.stop:
        changes["stop"] = tuple(dict.fromkeys((*req.stop, *preset.stop)))
    msgs = req.messages
    if preset.system and msgs is not None and not any(m.role == "system" for m in msgs):
        changes["messages"] = (Message(role="system", content=preset.system), *msgs)
    return dataclasses.replace(req, **changes) if changes else req


class PresetEngine(Engine):
    def __init__(self, inner: Engine, preset: Preset) -> None:
        self.inner = inner
        self.preset = preset

    def __getattr__(self, name: str) -> Any:
        # Only for what this class does not define: the inner engine's own extras.
        if name in ("inner", "preset"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        async for chunk in self.inner.generate(apply_preset(req, self.preset)):
            yield chunk

    async def encode(self, req: GenerateRequest) -> list[int] | None:
        return await self.inner.encode(apply_preset(req, self.preset))

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return await self.inner.tokenize(text, special=special)

    async def detokenize(self, ids: list[int]) -> str:
        return await self.inner.detokenize(ids)

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        return await self.inner.embed(req)

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    @property
    def supports_tools(self) -> bool:  # type: ignore[override]
        return self.inner.supports_tools

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def health(self) -> bool:
        return await self.inner.health()

    def finish_all(self) -> int:
        return self.inner.finish_all()

    def load(self) -> tuple[int, int]:
        return self.inner.load()

    def kv_cache(self) -> dict[str, int]:
        return self.inner.kv_cache()
