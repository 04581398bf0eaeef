"""A scripted reasoning model: an engine that says what a thinking model says
(its thinking in ``Chunk.reasoning``, then its answer or a call), as the
engines do once a family's parser has split them, and keeps every request it
was given so a test sees what a dialect asked for.

It stands in for the reasoning model no test can run here; the engines'
own splitting is tested against llama.cpp's expectations elsewhere. The
dialects' routes, converters and the real clients run for real over it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from llmkit.api.app import create_app
from llmkit.config.settings import ServeSettings
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, ToolCallDelta, Usage
from llmkit.engines.base import Engine
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import ThinkingUnsupportedError
from tests.conftest import serving

THOUGHT = ("The user", " asks for 2+2.", " That is 4.")
ANSWER = ("Four", ".")
REPLY = (
    *(Chunk(reasoning=r) for r in THOUGHT),
    *(Chunk(text=t) for t in ANSWER),
    Chunk(finish_reason="stop", usage=Usage(7, 9, reasoning_tokens=6)),
)
PLAIN = (*(Chunk(text=t) for t in ANSWER), Chunk(finish_reason="stop", usage=Usage(7, 2)))
CALL_ARGS = '{"city": "Oslo"}'
CALLS = (
    Chunk(reasoning="I need the weather."),
    Chunk(tool_calls=(ToolCallDelta(0, "call_1", "get_weather"),)),
    Chunk(tool_calls=(ToolCallDelta(0, arguments=CALL_ARGS),)),
    Chunk(finish_reason="tool_calls", usage=Usage(7, 12, reasoning_tokens=4)),
)


class Scripted(Engine):
    """Answers every request with ``script``; ``thinks``: whether it can think
    (it says so in its capabilities, and refuses thinking asked otherwise)."""

    supports_tools = True

    def __init__(self, script: tuple[Chunk, ...], *, thinks: bool = True) -> None:
        self.script = script
        self.thinks = thinks
        self.seen: list[GenerateRequest] = []

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        if req.think and not self.thinks:  # as the engines do, by the contract
            raise ThinkingUnsupportedError(self.info.model)
        self.seen.append(req)
        for chunk in self.script:
            yield chunk

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    async def detokenize(self, ids: list[int]) -> str:
        return "".join(map(chr, ids))

    @property
    def info(self) -> EngineInfo:
        caps = ("completion", "thinking") if self.thinks else ("completion",)
        return EngineInfo(engine="scripted", model="m", context_length=4096, capabilities=caps)


@contextlib.contextmanager
def thinking_server(store: str) -> Iterator[tuple[str, dict[str, Scripted]]]:
    """A real server on loopback serving ``thinker`` (thinks, then answers),
    ``caller`` (thinks, then calls get_weather) and ``plain`` (cannot think);
    its URL and the engines by name."""
    engines = {
        "thinker": Scripted(REPLY),
        "caller": Scripted(CALLS),
        "plain": Scripted(PLAIN, thinks=False),
    }
    registry = ModelRegistry([ServedModel([name], e) for name, e in engines.items()])
    with serving(create_app(ServeSettings(store=store), registry)) as url:
        yield url, engines
