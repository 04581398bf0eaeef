"""A streamed response: the engine's chunks as the Responses API's typed events.

The order is the one the ``openai`` SDK assembles a ``Response`` from:
``response.created``, ``response.in_progress``; for the thinking an
``output_item.added`` (a reasoning item), ``content_part.added`` (a
``reasoning_text``), ``reasoning_text.delta`` per piece, ``reasoning_text.done``,
``content_part.done``, ``output_item.done``; for the text an
``output_item.added`` (a message), ``content_part.added``, ``output_text.delta``
per piece, ``output_text.done``, ``content_part.done``, ``output_item.done``; for
each call an ``output_item.added`` (a function_call),
``function_call_arguments.delta`` per piece, ``.done`` and ``output_item.done``;
last ``response.completed`` (or ``response.incomplete``), each event numbered by
``sequence_number``. A failure after the start is an ``error`` event and then
``response.failed``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from llmkit.api.generation import as_llmkit_error
from llmkit.api.openai.replies import Head
from llmkit.api.responses import replies
from llmkit.api.responses.convert import Turn
from llmkit.api.responses.input_items import MakeId
from llmkit.api.responses.reasoning import reasoning_item
from llmkit.core.types import Chunk, Message, ToolCall, Usage
from llmkit.errors import LlmkitError

Event = dict[str, Any]
# Called with the finished Response and the assistant message before the last
# event goes out, so a client that retrieves it at once finds it stored.
OnDone = Callable[[dict[str, Any], Message], Awaitable[None]]


class _Events:
    """The state of one stream: numbered events, the open message, the calls."""

    def __init__(self, head: Head, turn: Turn, make_id: MakeId) -> None:
        self.head, self.turn, self.make_id = head, turn, make_id
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.text_id: str | None = None  # the open message item
        self.text: list[str] = []  # the open message's pieces
        self.said: list[str] = []  # every piece of text, for the history
        self.calls: list[ToolCall] = []
        self.call_item: dict[str, Any] | None = None  # the open call item
        self.thought_id: str | None = None  # the open reasoning item
        self.thought: list[str] = []  # its pieces
        self.thinking: list[str] = []  # every piece of thinking, for the history

    def event(self, kind: str, **fields: Any) -> Event:
        out = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return out

    def response(self, status: str, usage: Usage | None = None, **kw: Any) -> dict[str, Any]:
        done = int(time.time()) if status == "completed" else None
        return replies.to_response(
            self.head,
            self.turn,
            status=status,
            output=list(self.output),
            usage=usage,
            completed_at=done,
            **kw,
        )

    def thought_piece(self, piece: str) -> list[Event]:
        events = []
        if self.thought_id is None:
            events += self.close_text("completed") + self.close_call()
            self.thought_id = self.make_id("rs")
            item = reasoning_item(self.thought_id, "", "in_progress")
            added = self.event(
                "response.output_item.added", output_index=len(self.output), item=item
            )
            part = {"type": "reasoning_text", "text": ""}
            events += [added, self._part("response.content_part.added", part, self.thought_id)]
        self.thought.append(piece)
        self.thinking.append(piece)
        events.append(
            self.event(
                "response.reasoning_text.delta",
                item_id=self.thought_id,
                output_index=len(self.output),
                content_index=0,
                delta=piece,
            )
        )
        return events

    def close_thought(self, status: str) -> list[Event]:
        if self.thought_id is None:
            return []
        text = "".join(self.thought)
        item = reasoning_item(self.thought_id, text, status, sealed=self.turn.sealed)
        events = [
            self.event(
                "response.reasoning_text.done",
                item_id=self.thought_id,
                output_index=len(self.output),
                content_index=0,
                text=text,
            ),
            self._part("response.content_part.done", item["content"][0], self.thought_id),
            self.event("response.output_item.done", output_index=len(self.output), item=item),
        ]
        self.output.append(item)
        self.thought_id, self.thought = None, []
        return events

    def text_piece(self, piece: str) -> list[Event]:
        events = self.close_thought("completed")
        if self.text_id is None:
            self.text_id = self.make_id("msg")
            item = replies.message_item(self.text_id, "", "in_progress") | {"content": []}
            added = self.event(
                "response.output_item.added", output_index=len(self.output), item=item
            )
            events.append(added)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._part("response.content_part.added", part, self.text_id))
        self.text.append(piece)
        self.said.append(piece)
        events.append(
            self.event(
                "response.output_text.delta",
                item_id=self.text_id,
                output_index=len(self.output),
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        )
        return events

    def _part(self, kind: str, part: dict[str, Any], item_id: str | None) -> Event:
        return self.event(
            kind, item_id=item_id, output_index=len(self.output), content_index=0, part=part
        )

    def close_text(self, status: str) -> list[Event]:
        if self.text_id is None:
            return []
        text = "".join(self.text)
        item = replies.message_item(self.text_id, text, status)
        events = [
            self.event(
                "response.output_text.done",
                item_id=self.text_id,
                output_index=len(self.output),
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._part("response.content_part.done", item["content"][0], self.text_id),
            self.event("response.output_item.done", output_index=len(self.output), item=item),
        ]
        self.output.append(item)
        self.text_id, self.text = None, []
        return events

    def call_start(self, call_id: str, name: str) -> list[Event]:
        events = self.close_thought("completed") + self.close_text("completed") + self.close_call()
        call = ToolCall(call_id, name, "")
        self.call_item = replies.call_item(self.make_id("fc"), call, "in_progress")
        events.append(
            self.event(
                "response.output_item.added", output_index=len(self.output), item=self.call_item
            )
        )
        return events

    def call_piece(self, piece: str) -> list[Event]:
        if self.call_item is None or not piece:
            return []
        self.call_item["arguments"] += piece
        return [
            self.event(
                "response.function_call_arguments.delta",
                item_id=self.call_item["id"],
                output_index=len(self.output),
                delta=piece,
            )
        ]

    def close_call(self) -> list[Event]:
        item, self.call_item = self.call_item, None
        if item is None:
            return []
        item = item | {"status": "completed", "arguments": item["arguments"] or "{}"}
        self.calls.append(ToolCall(item["call_id"], item["name"], item["arguments"]))
        events = [
            self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=len(self.output),
                name=item["name"],
                arguments=item["arguments"],
            ),
            self.event("response.output_item.done", output_index=len(self.output), item=item),
        ]
        self.output.append(item)
        return events


async def to_events(
    head: Head,
    turn: Turn,
    stream: AsyncIterable[tuple[int, Chunk]],
    make_id: MakeId,
    on_done: OnDone,
) -> AsyncIterator[Event]:
    s = _Events(head, turn, make_id)
    yield s.event("response.created", response=s.response("in_progress"))
    yield s.event("response.in_progress", response=s.response("in_progress"))
    last = Chunk()
    try:
        async for _, chunk in stream:
            if chunk.reasoning:
                for e in s.thought_piece(chunk.reasoning):
                    yield e
            if chunk.text:
                for e in s.text_piece(chunk.text):
                    yield e
            for d in chunk.tool_calls:
                if d.name is not None:
                    for e in s.call_start(d.id or make_id("call"), d.name):
                        yield e
                for e in s.call_piece(d.arguments):
                    yield e
            if chunk.finish_reason is not None:
                last = chunk
        status = "incomplete" if last.finish_reason == "length" else "completed"
        for e in s.close_thought(status) + s.close_text(status) + s.close_call():
            yield e
        final = s.response(status, last.usage)
        reply = Message("assistant", "".join(s.said), tuple(s.calls), reasoning="".join(s.thinking))
        await on_done(final, reply)
    except Exception as exc:  # the stream has started: the failure is its last events
        err = as_llmkit_error(exc, "in a Responses stream already under way")
        yield s.event("error", code=_code(err), message=err.message, param=err.param)
        error = {"code": "server_error", "message": err.message}
        yield s.event("response.failed", response=s.response("failed", error=error))
        return
    yield s.event(f"response.{status}", response=final)


def _code(err: LlmkitError) -> str | None:
    return err.code or ("server_error" if err.status >= 500 else "invalid_request_error")
