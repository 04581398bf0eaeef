"""The conversations API routes: HTTP only. The store does the keeping, ``Chat``
the memory strategies, ``replies`` the streaming; errors take the OpenAI shape.

    GET    /conversations?q=            list (q: in the name or any message)
    POST   /conversations               create
    GET    /conversations/{name}        one, with its messages
    PATCH  /conversations/{name}        rename; system, memory, model, sampling
    DELETE /conversations/{name}
    GET    /conversations/{name}/export?format=json|markdown
    POST   /conversations/import        an export document -> a new conversation
    POST   /conversations/{name}/messages                 send; the reply as SSE
    POST   /conversations/{name}/regenerate               the last reply again
    POST   /conversations/{name}/messages/{id}/resend     edit a user turn, send again
    POST   /conversations/{name}/continue                 go on with a cut reply
    POST   /conversations/{name}/approve                  answer a tool call's approval
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sse_starlette import EventSourceResponse

from llmkit.api.conversations import replies, tool_replies
from llmkit.api.conversations import schemas as s
from llmkit.api.conversations.service import Conversations
from llmkit.errors import InvalidRequestError
from llmkit.memory.chat import new_session_name
from llmkit.memory.store import Store

# ``{name:path}``: a name may hold a "/" (``llmkit chat --session work/ideas``), sent as
# %2F. So a route with a suffix comes before the bare ``/{name}`` of its method.
router = APIRouter(prefix="/conversations", tags=["conversations"])


def _svc(request: Request) -> Conversations:
    return request.app.state.conversations


async def _store(request: Request) -> Store:
    return await _svc(request).store()


def _check_model(request: Request, model: str | None) -> None:
    if model is not None:
        _svc(request).registry.get(model)  # a 404 naming the served models


@router.get("")
async def list_conversations(
    request: Request, q: str | None = Query(None, description="Text in the name or a message.")
) -> s.ConversationList:
    store = await _store(request)

    def find() -> list[Any]:
        convs = store.list()
        if not q:
            return convs
        hits = {name for name, _ in store.search(q)}
        return [c for c in convs if c.name in hits or q.lower() in c.name.lower()]

    found = await asyncio.to_thread(find)
    return s.ConversationList(data=[s.ConversationOut.of(c) for c in found])


@router.post("", status_code=201)
async def create_conversation(request: Request, body: s.NewConversation) -> s.ConversationOut:
    store = await _store(request)
    _check_model(request, body.model)
    svc = _svc(request)
    settings = body.changes()
    settings.pop("model", None)
    model = body.model or svc.registry.names()[0]

    def create() -> Any:
        name = body.name or new_session_name()
        conv = store.create(
            name,
            model=model,
            url=svc.base_url,
            system=body.system,
            memory=body.memory or "buffer",
        )
        extra = {k: settings[k] for k in ("temperature", "max_tokens") if k in settings}
        return store.update(name, **extra) if extra else conv

    return s.ConversationOut.of(await asyncio.to_thread(create))


@router.get(
    "/{name:path}/export",
    response_model=None,
    responses={200: {"content": {"application/json": {}, "text/markdown": {}}}},
)
async def export_conversation(
    request: Request, name: str, format: str = Query("json", pattern="^(json|markdown)$")
) -> Any:
    store = await _store(request)
    if format == "markdown":
        text = await asyncio.to_thread(store.to_markdown, name)
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
    return await asyncio.to_thread(store.export, name)


@router.get("/{name:path}")
async def get_conversation(request: Request, name: str) -> s.ConversationDetail:
    store = await _store(request)
    # busy before the messages: a reply is saved before its turn is released, so
    # "not busy" read first means the messages read next hold that reply (read
    # after them, a reply that ended in between showed idle without its message).
    busy = _svc(request).is_busy(name)
    conv = await asyncio.to_thread(store.get, name)
    entries = await asyncio.to_thread(store.entries, name)
    out = s.ConversationOut.of(conv).model_dump()
    return s.ConversationDetail(
        **out,
        busy=busy,
        summary=conv.summary,
        messages=[s.MessageOut.of(e) for e in entries],
    )


@router.patch("/{name:path}")
async def update_conversation(
    request: Request, name: str, body: s.ConversationPatch
) -> s.ConversationOut:
    store = await _store(request)
    changes = body.changes()
    _check_model(request, changes.get("model"))
    if "memory" in changes and changes["memory"] is None:
        raise InvalidRequestError("memory can't be null; use 'buffer' for the whole history.")
    if "name" in body.model_fields_set and not body.name:
        raise InvalidRequestError("name can't be empty.", param="name")

    def apply() -> Any:
        conv = store.update(name, **changes) if changes else store.get(name)
        if body.name and body.name != name:
            _svc(request).check_idle(name)  # a reply under way would be stored nowhere
            conv = store.rename(name, body.name)
        return conv

    return s.ConversationOut.of(await asyncio.to_thread(apply))


@router.delete("/{name:path}", status_code=204)
async def delete_conversation(request: Request, name: str) -> Response:
    store = await _store(request)
    await asyncio.to_thread(store.delete, name)
    return Response(status_code=204)


@router.post("/import", status_code=201)
async def import_conversation(
    request: Request,
    document: Annotated[
        dict[str, Any], Body(description="What GET /conversations/{name}/export gave.")
    ],
    name: str | None = Query(None, description="Store it under this name instead."),
) -> s.ConversationOut:
    store = await _store(request)
    conv = await asyncio.to_thread(store.import_, document, name=name)
    return s.ConversationOut.of(conv)


async def _reply(request: Request, name: str, planner: replies.Planner) -> EventSourceResponse:
    await _store(request)  # a 404 for an unknown conversation comes from the plan
    events = await replies.start(request, name, planner)
    return EventSourceResponse(events, sep="\n")


@router.post("/{name:path}/messages", response_model=None, responses=s.SSE_DOC)
async def send_message(request: Request, name: str, body: s.UserTurn) -> EventSourceResponse:
    if body.mcp:
        await _store(request)
        events = await tool_replies.start(
            request,
            name,
            planner=replies.send(body.content),
            servers=body.mcp,
            tool_choice=body.tool_choice,
        )
        return EventSourceResponse(events, sep="\n")
    return await _reply(request, name, replies.send(body.content))


@router.post("/{name:path}/approve", response_model=None, responses=s.SSE_DOC)
async def approve(request: Request, name: str, body: s.ApprovalAnswer) -> EventSourceResponse:
    """Answer a tool call that waits for approval; the reply goes on as SSE."""
    await _store(request)
    events = await tool_replies.start(request, name, answer=(body.id, body.approve))
    return EventSourceResponse(events, sep="\n")


@router.post("/{name:path}/regenerate", response_model=None, responses=s.SSE_DOC)
async def regenerate(request: Request, name: str) -> EventSourceResponse:
    return await _reply(request, name, replies.resend(None, None))


@router.post("/{name:path}/messages/{entry_id}/resend", response_model=None, responses=s.SSE_DOC)
async def edit_and_resend(
    request: Request, name: str, entry_id: int, body: s.UserTurn
) -> EventSourceResponse:
    return await _reply(request, name, replies.resend(entry_id, body.content))


@router.post("/{name:path}/continue", response_model=None, responses=s.SSE_DOC)
async def continue_reply(request: Request, name: str) -> EventSourceResponse:
    return await _reply(request, name, replies.go_on)
