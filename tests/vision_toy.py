"""For the image tests: image files made with Pillow, and a toy engine that sees.

``Seer`` claims the "vision" capability and answers with what it was given, as
JSON: each message's role, text and images (hash, size, type, detail). Tests
compare that with the hashes and sizes of the files they sent, computed here
with hashlib and Pillow, never with llmkit's code. It does no vision: the
engine side is tested with a real (made) vision model elsewhere.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator

from PIL import Image as PILImage

from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Usage
from tests.toy_engine import ToyEngine, ToyOptions


def picture(color: str = "red", size: tuple[int, int] = (8, 6), fmt: str = "PNG") -> bytes:
    """A one-colour image file in ``fmt`` (PNG, JPEG, WEBP, GIF, BMP...)."""
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seen(data: bytes, mime: str, size: tuple[int, int], detail: str = "auto") -> list:
    """How ``Seer`` describes an image of these bytes."""
    return [sha(data), size[0], size[1], mime, detail]


class Seer(ToyEngine):
    """Answers with the messages it got (JSON), images described; usage counts
    100 prompt tokens per image, so a test can tell they were counted."""

    def __init__(self) -> None:
        super().__init__(ToyOptions())

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        described = [
            [m.role, m.content, [[i.sha256, i.width, i.height, i.mime, i.detail] for i in m.images]]
            for m in req.messages or ()
        ]
        images = sum(len(m.images) for m in req.messages or ())
        yield Chunk(
            text=json.dumps(described),
            finish_reason="stop",
            usage=Usage(prompt_tokens=1 + 100 * images, completion_tokens=1),
        )

    async def encode(self, req: GenerateRequest) -> list[int]:
        """A byte a token of text, and 100 placeholders (-1) an image, as a vision
        engine counts an image's positions."""
        ids: list[int] = []
        for m in req.messages or ():
            ids += [-1] * 100 * len(m.images) + list(m.content.encode())
        return ids

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            engine="toy",
            model="seer",
            context_length=100_000,
            capabilities=("completion", "vision"),
        )
