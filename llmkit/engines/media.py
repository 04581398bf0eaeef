"""Images in a prompt's token list, for the engines that decode it themselves.

A prompt with images is still one list of ints, so that everything that counts,
caches and compares prompts (the context budget, usage, the KV pool's prefix
tree, the host cache) works on it unchanged: each position an image's embedding
takes holds a *placeholder*, a negative id made from the image's sha256 and the
position within the image. The same image after the same text gives the same
ids, so its cells are found in the prefix cache like any text; another image
gives other ids, so nothing is shared by mistake.

``ImagePrompt`` is such a list that also carries, per image, what the engine
needs to compute the embeddings when no cache holds them (an engine's own
object, ``images``, keyed by ``image_key``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from llmkit.core.types import Message

#: Bits for the position within one image (a million embeddings: far above any).
_OFFSET_BITS = 20
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1


def image_key(sha256: str) -> int:
    """An image's key: 48 bits of its hash (collisions: one in 2^24 at 4096 images)."""
    return int(sha256[:12], 16)


def placeholders(key: int, n: int) -> list[int]:
    """The ids of an image's ``n`` positions."""
    base = key << _OFFSET_BITS
    return [-(base | i) - 1 for i in range(n)]


def is_placeholder(token: int) -> bool:
    return token < 0


def split_placeholder(token: int) -> tuple[int, int]:
    """(image key, position within the image) of a placeholder id."""
    v = -token - 1
    return v >> _OFFSET_BITS, v & _OFFSET_MASK


class ImagePrompt(list[int]):
    """Prompt tokens with image placeholders, and the images behind them."""

    def __init__(self, tokens: list[int], images: dict[int, Any]) -> None:
        super().__init__(tokens)
        self.images = images


def with_markers(messages: tuple[Message, ...], marker: str) -> tuple[Message, ...]:
    """Each message's images as ``marker``s in its content, before its text, as
    llama.cpp's server writes image parts into a chat template (the parts, text
    or image, joined with nothing between), so that both render the same prompt."""
    out = []
    for m in messages:
        if m.images:
            m = replace(m, content=marker * len(m.images) + m.content)
        out.append(m)
    return tuple(out)


def request_images(messages: tuple[Message, ...] | None) -> list[Any]:
    """Every image of a conversation, in the order the prompt shows them."""
    return [img for m in messages or () for img in m.images]
