"""LangChain's chat history, kept in llmkit's conversation store.

``RunnableWithMessageHistory`` with ``LlmkitChatHistory`` keeps each session's
messages in the same database as ``llmkit chat``, so a LangChain conversation
shows up in ``llmkit sessions`` and can be continued from the terminal:

    from langchain_core.runnables.history import RunnableWithMessageHistory
    from llmkit.integrations.langchain import LlmkitChatHistory

    chain = RunnableWithMessageHistory(
        prompt | llm, lambda session_id: LlmkitChatHistory(session_id),
        input_messages_key="input", history_messages_key="history",
    )

Needs ``langchain-core`` (``pip install llmkit[langchain]``).
"""

from __future__ import annotations

from collections.abc import Sequence

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "llmkit.integrations.langchain needs langchain-core: pip install 'llmkit[langchain]'"
    ) from e

from llmkit.memory.chat import open_store
from llmkit.memory.store import Store

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_CLASSES = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}


class LlmkitChatHistory(BaseChatMessageHistory):
    """The messages of conversation ``session`` in ``store`` (a ``Store``, a
    SQLAlchemy URL, or None for the default SQLite file)."""

    def __init__(
        self, session: str, *, store: Store | str | None = None, model: str | None = None
    ) -> None:
        self.store = open_store(store)
        self.session = session
        self.store.get_or_create(session, model=model)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        out: list[BaseMessage] = []
        for e in self.store.entries(self.session):
            cls = _CLASSES.get(e.role, HumanMessage)
            kwargs = {"interrupted": True} if e.interrupted else {}
            out.append(cls(content=e.content, additional_kwargs=kwargs))
        return out

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        for m in messages:
            role = _ROLES.get(m.type)
            if role is None:
                raise ValueError(f"LlmkitChatHistory cannot store {m.type} messages")
            content = m.content if isinstance(m.content, str) else m.text()
            self.store.append(self.session, role, content)  # type: ignore[arg-type]

    def clear(self) -> None:
        entries = self.store.entries(self.session)
        if entries:
            self.store.delete_entries_from(self.session, entries[0].id)
