"""A reply that may use the operator's MCP tools, in a stored conversation: the
tool loop (``api.mcp.loop``) run on ``Chat``'s history, streamed as SSE and
stored as it goes.

Each turn of the model is stored when it ends (an assistant message, its calls
kept with it), each result as a ``tool`` message answering its call, so a reload,
a restart or ``Chat`` on the same conversation sees the calls and results as
they happened. A call that waits for the user's approval is stored without a
result: the reply ends there (``approval_required``), and ``POST
/conversations/{name}/approve`` answers it and goes on from the stored messages
alone. The events (the page's contract, ``docs/guides/mcp.md``): ``user``;
``reasoning`` and ``delta`` as a plain reply's; ``tool_call`` when the model
calls a tool, ``approval`` when a call waits for a yes, ``tool_result`` when it
ran (or failed, or was denied); then ``done`` or ``error``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.requests import Request

from llmkit.api.conversations import schemas as s
from llmkit.api.conversations.inprocess import generate_request
from llmkit.api.conversations.replies import Plan, _done
from llmkit.api.conversations.service import Conversations
from llmkit.api.generation import Generation, as_llmkit_error
from llmkit.api.mcp import loop
from llmkit.api.mcp.servers import McpServers
from llmkit.api.openai.errors import error_body
from llmkit.api.tools import check_choice
from llmkit.core.types import Chunk, Message, Usage
from llmkit.errors import InvalidRequestError
from llmkit.memory.chat import Chat
from llmkit.memory.records import Entry
from llmkit.memory.store import Store


def read_choice(value: Any) -> tuple[str, str | None]:
    """The page's ``tool_choice``: auto, required, or ``{"name": tool}``."""
    if value is None or value == "auto":
        return "auto", None
    if value == "required":
        return "required", None
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return "required", value["name"]
    raise InvalidRequestError(
        "tool_choice must be 'auto', 'required' or {'name': a tool}.", param="tool_choice"
    )


async def toolbox(mcp: McpServers, names: list[str]) -> loop.ToolBox:
    """The tools of the configured servers ``names`` (a 400 for one not configured)."""
    specs = [mcp.configured(n, "mcp") for n in names]
    box = loop.ToolBox()
    for spec, listing in zip(
        specs, await asyncio.gather(*(mcp.list_tools(x) for x in specs)), strict=True
    ):
        for tool in listing.tools:
            box.add(loop.Offered(spec, tool, mcp.approval == "always"))
    return box


async def start(
    request: Request,
    name: str,
    *,
    planner: Callable[[Chat], Plan] | None = None,
    servers: list[str] | None = None,
    tool_choice: Any = None,
    answer: tuple[str, bool] | None = None,
) -> AsyncIterator[dict[str, str]]:
    """A reply with ``servers``' tools (``planner``: the user's turn), or the rest
    of one after the user's ``answer`` (call id, approved) to an approval request.
    Errors until the stream starts are plain HTTP errors."""
    svc: Conversations = request.app.state.conversations
    mcp: McpServers = request.app.state.mcp
    store = await svc.store()
    loop_ = asyncio.get_running_loop()
    turn = svc.turn(name)
    turn.__enter__()  # a 409 if a reply is under way; released when the events end
    try:
        chat = await asyncio.to_thread(svc.open_chat, store, name, loop_)
        choice, tool_name = read_choice(tool_choice)
        user: Entry | None = None
        decisions: dict[str, bool] = {}
        if answer is None:
            names = list(dict.fromkeys(servers or ()))
            box = await toolbox(mcp, names)
            check_choice(box.tools, choice, tool_name, "tool_choice")
            plan = await asyncio.to_thread(planner, chat)  # type: ignore[arg-type]
            messages, user = list(plan.request.messages or ()), plan.user
        else:
            names = await asyncio.to_thread(_pending_servers, chat, answer[0])
            box = await toolbox(mcp, names)
            decisions = {answer[0]: answer[1]}
            messages = await asyncio.to_thread(chat.plan)
            choice, tool_name = "auto", None
        base = generate_request(messages, chat.max_tokens, chat.temperature)
        model = svc.registry.get(chat.model)
    except BaseException:
        turn.__exit__(None, None, None)
        raise

    async def generate(msgs: tuple[Message, ...], step: int) -> AsyncIterator[Any]:
        first = step == 0
        req = dataclasses.replace(
            base,
            messages=msgs,
            tools=box.tools,
            tool_choice=choice if first else "auto",
            tool_name=tool_name if first else None,
        )
        return await Generation(request, model, [req]).streamed()

    run = loop.run(
        generate,
        messages,
        box,
        mcp,
        max_steps=request.app.state.settings.mcp_max_steps,
        decisions=decisions,
    )
    return _events(chat, store, names, box, user, run, lambda: turn.__exit__(None, None, None))


def _pending_servers(chat: Chat, call_id: str) -> list[str]:
    """The servers of the turn whose call ``call_id`` waits for an answer (a 400
    when no call of that id waits)."""
    entries = chat.entries
    answered = {e.tool_call_id for e in entries if e.role == "tool"}
    last = next((e for e in reversed(entries) if e.role == "assistant"), None)
    waiting = [c["id"] for c in (last.tool_calls if last else ()) if c["id"] not in answered]
    if call_id not in waiting:
        raise InvalidRequestError(
            f"No call {call_id!r} waits for approval in conversation '{chat.name}'"
            + (f"; waiting: {', '.join(waiting)}." if waiting else "."),
            param="id",
        )
    return list(last.tool_servers) if last else []


def _event(kind: str, **data: Any) -> dict[str, str]:
    return {"event": kind, "data": json.dumps(data)}


def _call(ev: loop.Call | loop.NeedsApproval) -> dict[str, Any]:
    server = ev.offered.server.name if ev.offered is not None else None
    return {
        "id": ev.call.id,
        "server": server,
        "name": ev.call.name,
        "arguments": ev.call.arguments_json,
    }


async def _events(
    chat: Chat,
    store: Store,
    servers: list[str],
    box: loop.ToolBox,
    user: Entry | None,
    run: AsyncIterator[loop.Event],
    release: Callable[[], None],
) -> AsyncIterator[dict[str, str]]:
    name = chat.name
    parts: list[str] = []
    thoughts: list[str] = []
    reply: Entry | None = None  # the last stored assistant turn
    end: loop.End | None = None
    usage = Usage(0, 0)
    failure: Exception | None = None

    def save(**kw: Any) -> Entry:
        return store.append(name, **kw)

    try:
        if user is not None:
            yield {"event": "user", "data": s.MessageOut.of(user).model_dump_json()}
        async for ev in run:
            if isinstance(ev, loop.Piece):
                if ev.chunk.reasoning:
                    thoughts.append(ev.chunk.reasoning)
                    yield _event("reasoning", text=ev.chunk.reasoning)
                if ev.chunk.text:
                    parts.append(ev.chunk.text)
                    yield _event("delta", text=ev.chunk.text)
            elif isinstance(ev, loop.Step):
                calls = [
                    {
                        "id": c.id,
                        "name": c.name,
                        "arguments": c.arguments_json,
                        "server": (o.server.name if (o := box.offered.get(c.name)) else None),
                    }
                    for c in ev.message.tool_calls
                ]
                reply = await anyio.to_thread.run_sync(
                    lambda m=ev.message, cs=calls: save(
                        role="assistant",
                        content=m.content,
                        reasoning=m.reasoning,
                        tool_calls=cs or None,
                        tool_servers=servers,
                    )
                )
                parts, thoughts = [], []
                if ev.last.usage is not None:
                    u = ev.last.usage
                    usage = Usage(
                        usage.prompt_tokens + u.prompt_tokens,
                        usage.completion_tokens + u.completion_tokens,
                        reasoning_tokens=usage.reasoning_tokens + u.reasoning_tokens,
                    )
            elif isinstance(ev, loop.Call):
                yield _event("tool_call", **_call(ev))
            elif isinstance(ev, loop.NeedsApproval):
                yield _event("approval", **_call(ev))
            elif isinstance(ev, loop.Result):
                r = ev.result
                await anyio.to_thread.run_sync(
                    lambda c=ev.call.id, r=r: save(
                        role="tool", content=r.output, tool_call_id=c, tool_error=r.error
                    )
                )
                server = ev.offered.server.name if ev.offered is not None else None
                yield _event(
                    "tool_result",
                    id=ev.call.id,
                    server=server,
                    name=ev.call.name,
                    output=r.output,
                    error=r.error,
                )
            else:
                end = ev
    except Exception as exc:  # the engine failed mid-reply: keep what came, say why
        failure = exc
    finally:
        try:
            if parts or thoughts:  # a turn cut short (a failure, the client gone)
                text, thought = "".join(parts), "".join(thoughts)
                with anyio.CancelScope(shield=True):
                    reply = await anyio.to_thread.run_sync(
                        lambda: save(
                            role="assistant", content=text, reasoning=thought, interrupted=True
                        )
                    )
        finally:
            release()
    if failure is not None:
        body = error_body(as_llmkit_error(failure, "in a conversation reply"))
        yield {"event": "error", "data": body.model_dump_json()}
        return
    last = Chunk(finish_reason=None, usage=usage)
    done = _done(reply, last, 0.0)
    done.finish_reason = end.reason if end is not None else None
    yield {"event": "done", "data": done.model_dump_json()}
