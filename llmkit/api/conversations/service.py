"""``Conversations`` (``app.state.conversations``): the store the API works on,
opened on first use, ``Chat`` objects bound to this server's own engines, and the
one-reply-at-a-time rule per conversation.

Two tabs (or a tab and a script) sending to one conversation at once would
interleave two user turns and two replies; the second gets a 409 instead, and
sends again once the first reply has ended. The rule holds within this server;
two servers on one PostgreSQL store still write every turn whole (each write is
one transaction), in the order they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from llmkit.api.conversations.inprocess import InProcessClient
from llmkit.engines.registry import ModelRegistry
from llmkit.errors import ConfigError, ConversationBusyError
from llmkit.memory.chat import Chat
from llmkit.memory.store import Store


class Conversations:
    def __init__(self, store_url: str | None, registry: ModelRegistry, base_url: str) -> None:
        self.store_url = store_url
        self.registry = registry
        self.base_url = base_url  # stored with new conversations, so `llmkit chat` finds us
        self._store: Store | None = None
        self._opening = asyncio.Lock()
        self._busy: set[str] = set()

    async def store(self) -> Store:
        """The store; opened (and migrated) in a worker thread the first time."""
        if self.store_url is None:
            raise ConfigError("This server was started without a conversation store.")
        async with self._opening:
            if self._store is None:
                self._store = await asyncio.to_thread(Store, self.store_url)
        return self._store

    def is_busy(self, name: str) -> bool:
        return name in self._busy

    def check_idle(self, name: str) -> None:
        if self.is_busy(name):
            raise ConversationBusyError(name)

    @contextlib.contextmanager
    def turn(self, name: str) -> Iterator[None]:
        """Hold ``name`` for one reply; a 409 if another reply holds it."""
        self.check_idle(name)
        self._busy.add(name)
        try:
            yield
        finally:
            self._busy.discard(name)

    def open_chat(self, store: Store, name: str, loop: asyncio.AbstractEventLoop) -> Chat:
        """``Chat`` on the stored conversation ``name`` (blocking: call from a worker
        thread). A 404 when there is none: sending never creates one."""
        conv = store.get(name)
        chat = Chat(
            url=conv.url or self.base_url,
            session=name,
            store=store,
            client=InProcessClient(self.registry, loop),  # type: ignore[arg-type]
            max_tokens=conv.max_tokens,
            temperature=conv.temperature,
        )
        if chat.model not in self.registry.names():
            # Made against another server (an Ollama, say): this server's first model.
            chat.model = self.registry.names()[0]
            store.update(name, model=chat.model)
        return chat

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
