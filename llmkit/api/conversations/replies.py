"""A reply in a stored conversation, streamed as server-sent events.

The work before the stream (storing the user turn, folding a summary, choosing
the messages) is ``Chat``'s own, run in a worker thread. Then the engine is
started and its first piece awaited before anything is sent, so a refusal (a
context too small, an unknown model) is a plain HTTP error. The reply is stored
when it ends; one cut short (the page's Stop, a closed tab, an engine failure)
is stored with what arrived, marked interrupted, as ``Chat`` stores it.

A reasoning model's thinking streams as events of its own (``reasoning``, apart
from the answer's ``delta``) and is stored beside the answer, never in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import anyio
from starlette.requests import Request

from llmkit.api.conversations import schemas as s
from llmkit.api.conversations.inprocess import generate_request
from llmkit.api.conversations.service import Conversations
from llmkit.api.generation import Generation, as_llmkit_error
from llmkit.api.openai.errors import error_body
from llmkit.core.types import Chunk, GenerateRequest, Image, Message
from llmkit.errors import InvalidRequestError
from llmkit.memory.chat import Chat
from llmkit.memory.records import Entry


@dataclass
class Plan:
    """What to generate, made by ``Chat`` in a worker thread."""

    request: GenerateRequest
    user: Entry | None = None  # the user turn just stored
    continuing: Entry | None = None  # the cut reply this one goes on from


Planner = Callable[[Chat], Plan]


def send(text: str, images: Sequence[Image] = ()) -> Planner:
    def plan(chat: Chat) -> Plan:
        messages = chat.prepare(text, images)  # stores the user turn first
        return Plan(_request(chat, messages), user=chat.entries[-1])

    return plan


def resend(
    entry_id: int | None, text: str | None, images: Sequence[Image] | None = None
) -> Planner:
    """Drop a user turn and all after it, then send it again (``text``: edited;
    ``images``: new ones, None keeps the turn's). ``entry_id`` None: the last user
    turn (regenerate the last reply)."""

    def plan(chat: Chat) -> Plan:
        users = [e for e in chat.entries if e.role == "user"]
        if entry_id is None and not users:
            raise InvalidRequestError("There is no reply to regenerate yet.")
        target = (
            users[-1] if entry_id is None else next((e for e in users if e.id == entry_id), None)
        )
        if target is None:
            raise InvalidRequestError(
                f"Conversation '{chat.name}' has no user message {entry_id}.", param="id"
            )
        chat.store.delete_entries_from(chat.name, target.id)
        pictures = target.images if images is None else images
        return send(target.content if text is None else text, pictures)(chat)

    return plan


def go_on(chat: Chat) -> Plan:
    """Continue the last reply where it was cut: the model's prompt for the history
    before it, then the cut text, as token ids (the template would close it)."""
    entries = chat.entries
    if not entries or entries[-1].role != "assistant":
        raise InvalidRequestError("The last message is not a reply to continue.")
    cut = entries[-1]
    messages = chat.plan(before=cut.id)
    if any(m.images for m in messages):  # token ids cannot carry an image
        raise InvalidRequestError(
            "A reply whose history holds images cannot be continued; regenerate it instead."
        )
    ids = chat.client.continuation(chat.model, messages, cut.content)  # type: ignore[attr-defined]
    if ids is None:
        raise InvalidRequestError("This model's engine cannot continue a reply.")
    base = _request(chat, [Message("user", "")])
    req = GenerateRequest(prompt=tuple(ids), sampling=base.sampling, max_tokens=base.max_tokens)
    return Plan(req, continuing=cut)


def _request(chat: Chat, messages: list[Message]) -> GenerateRequest:
    return generate_request(messages, chat.max_tokens, chat.temperature)


async def start(
    request: Request, name: str, planner: Callable[[Chat], Plan]
) -> AsyncIterator[dict[str, str]]:
    """Plan and start the reply (errors so far are plain HTTP errors); return its events."""
    svc: Conversations = request.app.state.conversations
    store = await svc.store()
    loop = asyncio.get_running_loop()
    turn = svc.turn(name)
    turn.__enter__()  # a 409 if a reply is under way; released when the events end
    try:
        chat = await asyncio.to_thread(svc.open_chat, store, name, loop)
        plan = await asyncio.to_thread(planner, chat)
        # Not ``start``: the messages come from the store, not the request, so the
        # request limits have nothing to bound.
        gen = Generation(request, svc.registry.get(chat.model), [plan.request])
        stream = await gen.streamed()
    except BaseException:
        turn.__exit__(None, None, None)
        raise
    return _events(chat, plan, stream, time.perf_counter(), lambda: turn.__exit__(None, None, None))


async def _events(
    chat: Chat,
    plan: Plan,
    stream: AsyncIterator[tuple[int, Chunk]],
    first_at: float,
    release: Callable[[], None],
) -> AsyncIterator[dict[str, str]]:
    parts: list[str] = []
    thoughts: list[str] = []
    last: Chunk | None = None
    last_at = first_at

    def save(interrupted: bool) -> Entry | None:
        cut = plan.continuing
        if cut is None:
            return chat.finish(parts, interrupted=interrupted, thoughts=thoughts)
        if interrupted and not parts and not thoughts:
            return cut  # nothing new: it stays as it was
        text = cut.content + "".join(parts)
        thought = cut.reasoning + "".join(thoughts)
        return chat.store.rewrite(
            chat.name, cut.id, text, interrupted=interrupted, reasoning=thought
        )

    # Whatever ends the stream (its end, an engine failure, the client leaving:
    # GeneratorExit at a yield or a cancellation inside an await), the reply is
    # saved exactly once, and saved before the conversation is released: a GET
    # that finds it idle finds the reply too. The save runs under a shield because
    # sse-starlette cancels this task when the client hangs up, and a cancelled
    # await of the save would release the turn while (or before) the save ran,
    # and a second save in a handler would store the reply twice.
    interrupted, failure, entry = True, None, None
    try:
        if plan.user is not None:
            yield {"event": "user", "data": s.MessageOut.of(plan.user).model_dump_json()}
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for _, chunk in stream:
                last_at = time.perf_counter()
                if chunk.finish_reason is not None:
                    last = chunk
                if chunk.reasoning:
                    thoughts.append(chunk.reasoning)
                    yield {"event": "reasoning", "data": json.dumps({"text": chunk.reasoning})}
                if chunk.text:
                    parts.append(chunk.text)
                    yield {"event": "delta", "data": json.dumps({"text": chunk.text})}
        interrupted = False
    except Exception as exc:  # the engine failed mid-reply: keep what came, say why
        failure = exc
    finally:
        try:
            with anyio.CancelScope(shield=True):
                entry = await anyio.to_thread.run_sync(save, interrupted)
        finally:
            release()
    if failure is not None:
        body = error_body(as_llmkit_error(failure, "in a conversation reply"))
        yield {"event": "error", "data": body.model_dump_json()}
    else:
        yield {"event": "done", "data": _done(entry, last, last_at - first_at).model_dump_json()}


def _done(entry: Entry | None, last: Chunk | None, seconds: float) -> s.ReplyDone:
    usage = None
    if last is not None and last.usage is not None:
        u = last.usage
        n = u.completion_tokens
        tps = (n - 1) / seconds if n > 1 and seconds > 0 else None
        usage = s.ReplyUsage(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=n,
            reasoning_tokens=u.reasoning_tokens,
            total_tokens=u.prompt_tokens + n,
            tokens_per_second=None if tps is None else round(tps, 2),
        )
    return s.ReplyDone(
        message=None if entry is None else s.MessageOut.of(entry),
        finish_reason=None if last is None else last.finish_reason,
        usage=usage,
    )
