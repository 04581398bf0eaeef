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

A reasoning model's thinking is kept apart from the answer: stored beside the
turn, never as its content, and handed back where LangChain's own chat models
put it, ``AIMessage.additional_kwargs["reasoning_content"]`` (langchain-deepseek,
langchain-ollama with ``reasoning=True``, langchain-openai for DeepSeek-style
servers). Thinking given as content blocks (``thinking``, Anthropic's; or
``reasoning``, LangChain's standard blocks) is read too.

Needs ``langchain-core`` (``pip install llmkit[langchain]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
            kwargs: dict[str, Any] = {"interrupted": True} if e.interrupted else {}
            if e.reasoning:
                kwargs["reasoning_content"] = e.reasoning
            out.append(cls(content=e.content, additional_kwargs=kwargs))
        return out

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        for m in messages:
            role = _ROLES.get(m.type)
            if role is None:
                raise ValueError(f"LlmkitChatHistory cannot store {m.type} messages")
            content, thought = answer_and_reasoning(m)
            self.store.append(self.session, role, content, reasoning=thought)  # type: ignore[arg-type]

    def clear(self) -> None:
        entries = self.store.entries(self.session)
        if entries:
            self.store.delete_entries_from(self.session, entries[0].id)


def answer_and_reasoning(m: BaseMessage) -> tuple[str, str]:
    """A LangChain message's answer text, and its thinking where it has some."""
    thought = m.additional_kwargs.get("reasoning_content") or ""
    if isinstance(m.content, str):
        return m.content, thought if isinstance(thought, str) else ""
    texts, thoughts = [], []
    for block in m.content:
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind in ("thinking", "reasoning"):
                thoughts.append(_block_thought(block))
    return "".join(texts), thought if isinstance(thought, str) and thought else "".join(thoughts)


def _block_thought(block: dict[str, Any]) -> str:
    """Anthropic's ``thinking``, LangChain's ``reasoning``, or OpenAI's reasoning summary."""
    said = block.get("thinking") or block.get("reasoning")
    if isinstance(said, str):
        return said
    summary = block.get("summary") or []
    return "".join(str(p.get("text") or "") for p in summary if isinstance(p, dict))
