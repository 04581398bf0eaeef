"""Which engine answers which served model name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from llmkit.engines.base import Engine
from llmkit.errors import ModelNotFoundError


@dataclass
class ServedModel:
    names: list[str]  # the first is the canonical name, the rest aliases
    engine: Engine
    created: int = 0

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass
class ModelRegistry:
    models: list[ServedModel] = field(default_factory=list)

    def add(self, model: ServedModel) -> None:
        taken = set(self.names())
        clash = taken.intersection(model.names)
        if clash:
            raise ValueError(f"served model name(s) already in use: {', '.join(sorted(clash))}")
        self.models.append(model)

    def names(self) -> list[str]:
        return [n for m in self.models for n in m.names]

    def get(self, name: str) -> ServedModel:
        for m in self.models:
            if name in m.names:
                return m
        raise ModelNotFoundError(name, self.names())

    async def start(self) -> None:
        for m in self.models:
            await m.engine.start()

    async def close(self) -> None:
        await asyncio.gather(*(m.engine.close() for m in self.models))

    def finish_all(self) -> int:
        """End every running generation with its final chunk (server shutdown)."""
        return sum(m.engine.finish_all() for m in self.models)
