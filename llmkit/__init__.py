"""llmkit: get, size, serve and chat with local LLMs behind the OpenAI and Ollama APIs.

``from llmkit import Chat`` (or ``AsyncChat``) is the Python way to talk to a
model with memory; see ``llmkit.memory.chat``.
"""

from __future__ import annotations

from typing import Any

from llmkit.version import __version__

__all__ = ["AsyncChat", "Chat", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: ``llmkit serve`` should not pay for the chat client's imports.
    if name in ("Chat", "AsyncChat"):
        from llmkit.memory import chat

        return getattr(chat, name)
    raise AttributeError(f"module 'llmkit' has no attribute {name!r}")
