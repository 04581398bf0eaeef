"""A toy engine in a package of its own, registered the way any third-party engine
is: through the ``llmkit.engines`` entry-point group (``test_engine_plugins``
writes the distribution metadata that names ``tests.toy_engine:SPEC``).

It repeats its one option, ``toy_greeting``, so a test can tell that the flag
generated from its ``Options`` reached it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Usage
from llmkit.engines.base import Engine
from llmkit.engines.spec import BuildContext, Built, EngineSpec


class ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    toy_greeting: str = Field(default="hello", description="What the toy engine says.")
    toy_repeat: int = Field(default=3, ge=1, description="How many times it says it.")


class ToyEngine(Engine):
    def __init__(self, opts: ToyOptions) -> None:
        self.opts = opts

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        n = min(self.opts.toy_repeat, req.max_tokens or self.opts.toy_repeat)
        for i in range(n):
            last = i == n - 1
            yield Chunk(
                text=self.opts.toy_greeting + ("" if last else " "),
                finish_reason="stop" if last else None,
                usage=Usage(prompt_tokens=1, completion_tokens=n) if last else None,
            )

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    async def detokenize(self, ids: list[int]) -> str:
        return "".join(map(chr, ids))

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(engine="toy", model="toy", context_length=1024)


def _build(ctx: BuildContext, opts: ToyOptions, _fit: Any) -> list[Built]:
    return [Built(ctx.model or "toy-model", ToyEngine(opts))]


SPEC = EngineSpec(name="toy", summary="says hello", options=ToyOptions, build=_build)
