"""A response whose request offers MCP tools: the servers' tools listed and
offered, then the tool loop (``api.mcp.loop``) run to its end, told as the
Responses API's items and typed events.

The events are those of a plain response (``stream``) for the model's thinking
and text, streamed as they come, and for each MCP tool call an
``output_item.added`` (an ``mcp_call`` in progress), ``mcp_call_arguments.delta``
and ``.done``, ``mcp_call.in_progress``, then ``mcp_call.completed`` (or
``.failed``) and ``output_item.done`` once the server answered; each server's
listing is an ``mcp_list_tools`` item (``mcp_list_tools.in_progress``,
``.completed`` or ``.failed``); a call that waits for the user's yes is an
``mcp_approval_request`` item, and the response ends there, completed, to go on
in the next one (``previous_response_id`` and an ``mcp_approval_response``).
A loop past the step limit (``--mcp-max-steps``) or the request's
``max_tool_calls`` ends incomplete, its reason ``max_tool_calls``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request

from llmkit.api.generation import as_llmkit_error, start
from llmkit.api.mcp import loop
from llmkit.api.mcp.servers import McpServers
from llmkit.api.openai.replies import Head
from llmkit.api.responses import convert
from llmkit.api.responses import mcp_items as mi
from llmkit.api.responses.convert import Turn
from llmkit.api.responses.input_items import MakeId
from llmkit.api.responses.stream import Event, _code, _Events
from llmkit.api.tools import check_choice
from llmkit.core.types import Message, ToolCall, Usage
from llmkit.engines.registry import ServedModel

INCOMPLETE_STEPS = "max_tool_calls"  # incomplete_details.reason past the step limit
OnDone = Callable[[dict[str, Any], list[Message]], Awaitable[None]]


async def offer(
    request: Request, turn: Turn, make_id: MakeId
) -> tuple[loop.ToolBox, list[dict[str, Any]]]:
    """The request's MCP servers resolved (configured ones by label; a URL only
    where the operator allows), their tools listed and filtered by
    ``allowed_tools``; and the ``mcp_list_tools`` items that say so."""
    mcp: McpServers = request.app.state.mcp
    box, items = loop.ToolBox(), []
    for asked in turn.mcp:
        where, label = asked["where"], asked["server_label"]
        if asked["server_url"] is not None:
            spec = mcp.for_url(label, asked["server_url"], (), f"{where}.server_url")
        else:
            spec = mcp.configured(label, f"{where}.server_label")
        listing = await mcp.list_tools(spec, headers=asked["headers"])
        shown = [t for t in listing.tools if mi.allowed(asked, t)]
        items.append(mi.list_tools_item(make_id("mcpl"), label, shown, listing.error))
        for tool in shown:
            approval = mi.needs_approval(asked, tool)
            box.add(loop.Offered(spec, tool, approval, asked["headers"]))
    check_choice((*turn.tools, *box.tools), turn.tool_choice, turn.tool_name, "tool_choice")
    return box, items


class _McpEvents(_Events):
    """A stream's state, with MCP items: where each running call's item sits."""

    def __init__(self, head: Head, turn: Turn, make_id: MakeId) -> None:
        super().__init__(head, turn, make_id)
        self.running: dict[str, int] = {}  # call id -> its item's output index
        self.usage = Usage(0, 0)

    def close_all(self, status: str = "completed") -> list[Event]:
        return self.close_thought(status) + self.close_text(status) + self.close_call()

    def listed(self, item: dict[str, Any]) -> list[Event]:
        i = len(self.output)
        self.output.append(item)
        ended = "failed" if item["error"] else "completed"
        return [
            self.event("response.output_item.added", output_index=i, item=item),
            self.event("response.mcp_list_tools.in_progress", item_id=item["id"], output_index=i),
            self.event(f"response.mcp_list_tools.{ended}", item_id=item["id"], output_index=i),
            self.event("response.output_item.done", output_index=i, item=item),
        ]

    def calling(self, call: ToolCall, label: str, approved: bool | None) -> list[Event]:
        item = mi.call_item(call, label, None, approved)
        i = len(self.output)
        self.output.append(item)
        self.running[call.id] = i
        return [
            self.event("response.output_item.added", output_index=i, item=item),
            self.event(
                "response.mcp_call_arguments.delta",
                item_id=item["id"],
                output_index=i,
                delta=call.arguments_json,
            ),
            self.event(
                "response.mcp_call_arguments.done",
                item_id=item["id"],
                output_index=i,
                arguments=call.arguments_json,
            ),
            self.event("response.mcp_call.in_progress", item_id=item["id"], output_index=i),
        ]

    def called(self, r: loop.Result) -> list[Event]:
        label = r.offered.server.name if r.offered is not None else ""
        events = []
        if r.call.id not in self.running:
            events += self.calling(r.call, label, r.approved)
        i = self.running.pop(r.call.id)
        item = mi.call_item(r.call, label, r.result, r.approved)
        self.output[i] = item
        ended = "failed" if r.result.error else "completed"
        events.append(self.event(f"response.mcp_call.{ended}", item_id=item["id"], output_index=i))
        events.append(self.event("response.output_item.done", output_index=i, item=item))
        return events

    def asked(self, call: ToolCall, label: str) -> list[Event]:
        item = mi.approval_request_item(call, label)
        i = len(self.output)
        self.output.append(item)
        return [
            self.event("response.output_item.added", output_index=i, item=item),
            self.event("response.output_item.done", output_index=i, item=item),
        ]

    def function_call(self, call: ToolCall) -> list[Event]:
        return self.call_start(call.id, call.name) + self.call_piece(call.arguments_json)

    def count(self, usage: Usage | None) -> None:
        if usage is not None:
            u = self.usage
            self.usage = Usage(
                u.prompt_tokens + usage.prompt_tokens,
                u.completion_tokens + usage.completion_tokens,
                u.cached_tokens + usage.cached_tokens,
                u.reasoning_tokens + usage.reasoning_tokens,
            )


async def events(
    request: Request,
    model: ServedModel,
    turn: Turn,
    messages: tuple[Message, ...],
    box: loop.ToolBox,
    listed: list[dict[str, Any]],
    head: Head,
    make_id: MakeId,
    max_output_tokens: int | None,
    on_done: OnDone,
    *,
    reraise: bool = False,
) -> AsyncIterator[Event]:
    """The response's events, from ``response.created`` to its last; ``on_done``
    gets the final Response and the messages the run added, before that last one.
    ``reraise``: a failure is raised (a response not streamed: a plain error)."""
    s = _McpEvents(head, turn, make_id)
    mcp: McpServers = request.app.state.mcp
    tools = (*turn.tools, *box.tools)

    async def generate(msgs: tuple[Message, ...], step: int) -> AsyncIterator[Any]:
        first = step == 0
        req = convert.to_generate_request(turn, msgs, max_output_tokens)
        req = dataclasses.replace(
            req,
            tools=tools,
            tool_choice=turn.tool_choice if first else "auto",
            tool_name=turn.tool_name if first else None,
        )
        gen = start(request, model, lambda: [req], None, think_param="reasoning.effort")
        return await gen.streamed()

    yield s.event("response.created", response=s.response("in_progress"))
    yield s.event("response.in_progress", response=s.response("in_progress"))
    history = list(messages)
    before = len(history)
    try:
        for item in listed:
            for e in s.listed(item):
                yield e
        run = loop.run(
            generate,
            history,
            box,
            mcp,
            max_steps=request.app.state.settings.mcp_max_steps,
            decisions=turn.decisions,
            max_calls=turn.echo.get("max_tool_calls"),
            external=frozenset(t.name for t in turn.tools),
        )
        end: loop.End | None = None
        async for ev in run:
            out: list[Event] = []
            if isinstance(ev, loop.Piece):
                if ev.chunk.reasoning:
                    out += s.thought_piece(ev.chunk.reasoning)
                if ev.chunk.text:
                    out += s.text_piece(ev.chunk.text)
            elif isinstance(ev, loop.Step):
                s.count(ev.last.usage)
                cut = "incomplete" if ev.last.finish_reason == "length" else "completed"
                out += s.close_all(cut)
            elif isinstance(ev, loop.Call):
                if ev.offered is None and any(t.name == ev.call.name for t in turn.tools):
                    out += s.function_call(ev.call)
                elif not ev.offered.approval:
                    out += s.calling(ev.call, ev.offered.server.name, None)
            elif isinstance(ev, loop.NeedsApproval):
                out += s.asked(ev.call, ev.offered.server.name)
            elif isinstance(ev, loop.Result):
                out += s.close_call() + s.called(ev)
            else:
                end = ev
            for e in out:
                yield e
        for e in s.close_all():
            yield e
        assert end is not None
        status = "incomplete" if end.reason in ("length", "max_tool_steps") else "completed"
        reason = INCOMPLETE_STEPS if end.reason == "max_tool_steps" else "max_output_tokens"
        final = s.response(status, s.usage)
        if status == "incomplete":
            final["incomplete_details"] = {"reason": reason}
        await on_done(final, history[before:])
    except Exception as exc:  # the stream has started: the failure is its last events
        if reraise:
            raise
        err = as_llmkit_error(exc, "in a Responses tool loop already under way")
        yield s.event("error", code=_code(err), message=err.message, param=err.param)
        error = {"code": "server_error", "message": err.message}
        yield s.event("response.failed", response=s.response("failed", error=error))
        return
    yield s.event(f"response.{status}", response=final)
