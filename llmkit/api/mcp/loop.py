"""The tool loop every front end runs: model -> tool calls -> MCP servers -> results
-> model, until the model answers without calling, a call needs the user's
approval, or the step limit is reached.

It is a plain async generator of events (``Piece`` per chunk of the model's
output, ``Step`` when one of its turns ends, ``Call``, ``Approval``, ``Result``
and one ``End``), so the Responses API, the page's SSE and ``llmkit chat`` each
render the same run in their own words. The loop holds no state of its own: it
resumes from the messages alone (an assistant turn whose calls lack results at
the end of them) and the user's ``decisions``, which is how an approval given
in a later request (or after a restart) continues the turn.

A tool not in the ``ToolBox`` is never called: the model is not offered it, and
a call to it anyway gets an error result. A failure of any kind (a server down,
a timeout, a tool that raised, a call denied) is an error result the model reads
and goes on from.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llmkit.api.mcp.servers import CallResult, McpServers, RemoteTool, ServerSpec
from llmkit.core.tools import join_calls
from llmkit.core.types import Chunk, Message, Tool, ToolCall

Approval = Literal["always", "never"]


@dataclass(frozen=True)
class Offered:
    """A tool the model may call: where it lives, and whether a call waits for a yes."""

    server: ServerSpec
    remote: RemoteTool
    approval: bool
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def tool(self) -> Tool:
        return Tool(self.remote.name, self.remote.description, json.dumps(self.remote.input_schema))


@dataclass
class ToolBox:
    """The MCP tools a run offers, by the name the model calls them."""

    offered: dict[str, Offered] = field(default_factory=dict)

    def add(self, o: Offered) -> None:
        # Two servers with a tool of one name: the first keeps it (the model calls
        # tools by name alone).
        self.offered.setdefault(o.remote.name, o)

    @property
    def tools(self) -> tuple[Tool, ...]:
        return tuple(o.tool for o in self.offered.values())


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    chunk: Chunk  # text or thinking of the model's current turn (tool deltas dropped)


@dataclass(frozen=True)
class Step:
    message: Message  # the model's turn, whole (its calls included)
    last: Chunk  # its last chunk: finish_reason, usage


@dataclass(frozen=True)
class Call:
    call: ToolCall
    offered: Offered | None  # None: not an MCP tool of this run


@dataclass(frozen=True)
class NeedsApproval:
    call: ToolCall
    offered: Offered


@dataclass(frozen=True)
class Result:
    call: ToolCall
    offered: Offered | None
    result: CallResult
    approved: bool | None = None  # the user's answer, where one was asked


EndReason = Literal["stop", "length", "tool_calls", "approval_required", "max_tool_steps"]


@dataclass(frozen=True)
class End:
    reason: EndReason  # tool_calls: calls of tools the caller runs itself (functions)
    last: Chunk


Event = Piece | Step | Call | NeedsApproval | Result | End
# Starts the model's next turn on these messages (the step's number from 0): its chunks.
Generate = Callable[[tuple[Message, ...], int], Awaitable[AsyncIterator[Any]]]


def pending_calls(messages: list[Message]) -> list[ToolCall]:
    """The calls of the last assistant turn that have no result after it yet."""
    answered: set[str] = set()
    for m in reversed(messages):
        if m.role == "tool" and m.tool_call_id:
            answered.add(m.tool_call_id)
        elif m.role == "assistant":
            return [c for c in m.tool_calls if c.id not in answered]
        else:
            return []
    return []


def _arguments(call: ToolCall) -> dict[str, Any] | None:
    try:
        args = json.loads(call.arguments_json or "{}")
    except ValueError:
        return None
    return args if isinstance(args, dict) else None


async def run(
    generate: Generate,
    messages: list[Message],
    box: ToolBox,
    servers: McpServers,
    *,
    max_steps: int,
    decisions: dict[str, bool] | None = None,
    max_calls: int | None = None,
    external: frozenset[str] = frozenset(),
) -> AsyncIterator[Event]:
    """Run the loop on ``messages`` (extended in place with each turn and result).
    ``max_steps``: the most turns of the model; ``max_calls``: the most tool calls
    run (both end the run with ``max_tool_steps``). ``decisions``: the user's
    answers to approval requests, by call id. ``external``: the functions the
    caller runs itself (a call of one ends the run with ``tool_calls``); a call of
    any other tool outside ``box`` is an error result, never sent anywhere."""
    decisions = decisions or {}
    steps = calls_run = 0
    last = Chunk()
    while True:
        waiting = False
        for call in pending_calls(messages):
            offered = box.offered.get(call.name)
            if offered is None:
                why = f"{call.name!r} is not a tool offered here."
                result = CallResult(why, error=True, protocol=True)
                yield Result(call, None, result)
            elif offered.approval and call.id not in decisions:
                waiting = True
                yield NeedsApproval(call, offered)
                continue
            elif offered.approval and not decisions[call.id]:
                result = CallResult("The user denied this call.", error=True, protocol=True)
                yield Result(call, offered, result, approved=False)
            else:
                args = _arguments(call)
                if args is None:
                    why = "The arguments are not a JSON object."
                    result = CallResult(why, error=True, protocol=True)
                else:
                    result = await servers.call(
                        offered.server, offered.remote.name, args, offered.headers
                    )
                calls_run += 1
                yield Result(call, offered, result, approved=True if offered.approval else None)
            messages.append(Message("tool", result.output, tool_call_id=call.id))
        if waiting:
            yield End("approval_required", last)
            return
        if steps >= max_steps or (max_calls is not None and calls_run >= max_calls):
            yield End("max_tool_steps", last)
            return
        stream = await generate(tuple(messages), steps)
        steps += 1
        text, thought, deltas = [], [], []
        async for item in stream:
            chunk: Chunk = item[1] if isinstance(item, tuple) else item
            deltas.extend(chunk.tool_calls)
            if chunk.finish_reason is not None:
                last = chunk
            if chunk.text or chunk.reasoning:
                text.append(chunk.text)
                thought.append(chunk.reasoning)
                yield Piece(replace(chunk, tool_calls=()))
        calls = _with_ids(join_calls(deltas), steps)
        message = Message("assistant", "".join(text), tuple(calls), reasoning="".join(thought))
        messages.append(message)
        yield Step(message, last)
        if not calls:
            yield End("length" if last.finish_reason == "length" else "stop", last)
            return
        for call in calls:
            yield Call(call, box.offered.get(call.name))
        if any(c.name in external and c.name not in box.offered for c in calls):
            # A function the caller runs itself (Responses' function tools): the loop
            # stops there, as a plain tool call would.
            yield End("tool_calls", last)
            return


def _with_ids(calls: list[ToolCall], step: int) -> list[ToolCall]:
    """Calls keep the engine's ids; one without gets one (results answer it by id)."""
    return [c if c.id else replace(c, id=f"call_{step}_{i}") for i, c in enumerate(calls)]


__all__ = [
    "Call",
    "End",
    "Event",
    "NeedsApproval",
    "Offered",
    "Piece",
    "Result",
    "Step",
    "ToolBox",
    "pending_calls",
    "run",
]
