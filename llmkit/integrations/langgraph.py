"""A LangGraph checkpointer on llmkit's conversation store.

LangChain's ``RunnableWithMessageHistory`` is deprecated in favour of LangGraph
checkpointers; ``LlmkitCheckpointer`` is one. A graph compiled with it keeps its
threads in the store's database (SQLite in the data directory by default, or
any PostgreSQL URL), so a thread can be resumed in another process, and each
thread's messages (the ``messages`` channel of its newest root checkpoint, when
it holds LangChain messages) show up as the conversation ``langgraph:<thread_id>``
in ``llmkit sessions``, the chat page and ``Store``:

    from langgraph.graph import START, MessagesState, StateGraph
    from llmkit.integrations.langgraph import LlmkitCheckpointer

    graph = StateGraph(MessagesState).add_node(call_model).add_edge(START, "call_model")
    app = graph.compile(checkpointer=LlmkitCheckpointer())
    app.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t1"}})

The checkpoint is the truth and the conversation its mirror, rewritten in the
same transaction on every checkpoint: what is written into a ``langgraph:``
conversation from elsewhere is replaced at the thread's next step.

Async methods run the sync ones in a worker thread (``asyncio.to_thread``)
rather than on an async driver: one engine, one connection pool and one set of
transaction rules (SQLite's ``BEGIN IMMEDIATE`` + busy timeout, PostgreSQL's
advisory-locked migrations) serve both, with no aiosqlite / async psycopg pool
to keep in step; each call is one short transaction, so the thread hop costs
little next to a model call, and the event loop never blocks on the database.

Needs ``langgraph`` (``pip install llmkit[langgraph]``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

try:
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "llmkit.integrations.langgraph needs langgraph: pip install 'llmkit[langgraph]'"
    ) from e

from llmkit.core.types import Message
from llmkit.errors import InvalidRequestError
from llmkit.integrations.langchain import answer_and_reasoning
from llmkit.memory.chat import open_store
from llmkit.memory.checkpoints import CheckpointStore, Mirror, StoredCheckpoint, StoredWrite
from llmkit.memory.records import check_name
from llmkit.memory.store import Store

log = logging.getLogger(__name__)

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class LlmkitCheckpointer(BaseCheckpointSaver[int]):
    """LangGraph threads in ``store`` (a ``Store``, a SQLAlchemy URL, or None for
    ``LLMKIT_STORE`` / the SQLite file in the data directory).

    ``mirror_prefix`` names the conversation each thread's messages are mirrored
    to (``prefix + thread_id``); None turns the mirror off.
    """

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        serde: SerializerProtocol | None = None,
        mirror_prefix: str | None = "langgraph:",
    ) -> None:
        super().__init__(serde=serde)
        self._owns_store = not isinstance(store, Store)
        self.store = open_store(store)
        try:
            self._rows = CheckpointStore(self.store)
        except InvalidRequestError:
            self.close()
            raise
        self.mirror_prefix = mirror_prefix

    def close(self) -> None:
        """Release the database connections, if this saver opened the store."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> LlmkitCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sync -------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        found = self._rows.get(
            str(conf["thread_id"]), conf.get("checkpoint_ns", ""), get_checkpoint_id(config)
        )
        return None if found is None else self._tuple(found)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        conf = (config or {}).get("configurable", {})
        before_id = get_checkpoint_id(before) if before else None

        def matches(typed: tuple[str, bytes]) -> bool:
            metadata = self.serde.loads_typed(typed)
            return all(metadata.get(k) == v for k, v in (filter or {}).items())

        found = self._rows.list(
            thread_id=None if conf.get("thread_id") is None else str(conf["thread_id"]),
            checkpoint_ns=conf.get("checkpoint_ns"),
            checkpoint_id=conf.get("checkpoint_id"),
            before_id=before_id,
            metadata_ok=matches if filter else None,
            limit=limit,
        )
        for stored in found:
            yield self._tuple(stored)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        # LangGraph takes any thread id (an int, a UUID); the store keys it as text
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        self._rows.put(
            thread_id,
            ns,
            checkpoint["id"],
            conf.get("checkpoint_id"),  # the checkpoint this one follows
            self.serde.dumps_typed(checkpoint),
            self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
            mirror=self._mirror(thread_id, ns, checkpoint) if self.mirror_prefix else None,
        )
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        rows = [
            StoredWrite(
                task_id,
                channel,
                self.serde.dumps_typed(value),
                task_path,
                WRITES_IDX_MAP.get(channel, idx),
            )
            for idx, (channel, value) in enumerate(writes)
        ]
        self._rows.put_writes(
            str(conf["thread_id"]), conf.get("checkpoint_ns", ""), conf["checkpoint_id"], rows
        )

    def delete_thread(self, thread_id: str) -> None:
        thread_id = str(thread_id)
        self._rows.delete_thread(thread_id, mirror=self._mirror_name(thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread whole (every checkpoint, every pending write) to another id."""
        source_thread_id, target_thread_id = str(source_thread_id), str(target_thread_id)
        mirror = None
        head = self.get_tuple({"configurable": {"thread_id": source_thread_id}})
        if head is not None and self.mirror_prefix:
            mirror = self._mirror(target_thread_id, "", head.checkpoint)
        self._rows.copy_thread(source_thread_id, target_thread_id, mirror=mirror)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: keep only each namespace's newest checkpoint (its state is
        whole: this saver stores every channel's value in each checkpoint; a graph
        on LangGraph's beta ``DeltaChannel`` needs the ancestors, don't prune it);
        ``delete``: drop the threads, as ``delete_thread``."""
        if strategy == "delete":
            for thread_id in thread_ids:
                self.delete_thread(thread_id)
        elif strategy == "keep_latest":
            self._rows.keep_latest([str(t) for t in thread_ids])
        else:
            raise ValueError(f"Unknown prune strategy {strategy!r}: keep_latest or delete.")

    # -- async: the sync calls in a worker thread (see the module docstring) -----------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def collect() -> list[CheckpointTuple]:
            return [*self.list(config, filter=filter, before=before, limit=limit)]

        for item in await asyncio.to_thread(collect):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

    # -- helpers ----------------------------------------------------------------------

    def _tuple(self, stored: StoredCheckpoint) -> CheckpointTuple:
        def config(checkpoint_id: str) -> RunnableConfig:
            return {
                "configurable": {
                    "thread_id": stored.thread_id,
                    "checkpoint_ns": stored.checkpoint_ns,
                    "checkpoint_id": checkpoint_id,
                }
            }

        return CheckpointTuple(
            config=config(stored.checkpoint_id),
            checkpoint=self.serde.loads_typed(stored.checkpoint),
            metadata=self.serde.loads_typed(stored.metadata),
            parent_config=config(stored.parent_id) if stored.parent_id else None,
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed(w.value)) for w in stored.writes
            ],
        )

    def _mirror_name(self, thread_id: str) -> str | None:
        if self.mirror_prefix is None:
            return None
        name = f"{self.mirror_prefix}{thread_id}"
        try:
            return check_name(name)
        except InvalidRequestError:
            return None

    def _mirror(self, thread_id: str, ns: str, checkpoint: Checkpoint) -> Mirror | None:
        """The thread's conversation as of ``checkpoint``: only the root graph's
        (subgraphs keep their own namespaces) and only LangChain messages."""
        messages = checkpoint["channel_values"].get("messages")
        if ns or not isinstance(messages, list):
            return None
        if not all(isinstance(m, BaseMessage) for m in messages):
            return None
        name = self._mirror_name(thread_id)
        if name is None:
            log.warning("thread %r: no conversation name fits it; not mirrored", thread_id)
            return None
        return Mirror(name, [m for m in map(_to_message, messages) if m is not None])


def _to_message(m: BaseMessage) -> Message | None:
    role = _ROLES.get(m.type)
    if role is None:  # e.g. a custom message type: not a turn of the conversation
        return None
    # the answer is the turn's content; a reasoning model's thinking goes beside it
    content, thought = answer_and_reasoning(m)
    calls = getattr(m, "tool_calls", None)
    if not content and calls:  # an assistant turn that only calls tools: show the calls
        content = "\n".join(f"{c['name']}({json.dumps(c['args'])})" for c in calls)
    return Message(role, content, reasoning=thought)  # type: ignore[arg-type]
