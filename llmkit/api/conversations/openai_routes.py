"""OpenAI's Conversations API (``/v1/conversations``): HTTP only.

    POST   /v1/conversations                        create (metadata, up to 20 items)
    GET    /v1/conversations/{id}                   retrieve
    POST   /v1/conversations/{id}                   update (metadata)
    DELETE /v1/conversations/{id}                   delete
    GET    /v1/conversations/{id}/items             list (after, limit, order, include)
    POST   /v1/conversations/{id}/items             create (up to 20 at once)
    GET    /v1/conversations/{id}/items/{item_id}   retrieve
    DELETE /v1/conversations/{id}/items/{item_id}   delete (answers the conversation)

The conversations are the store's own (``memory/item_store.py``): the ones
``Chat``, the page, ``llmkit sessions`` and LangGraph threads use. ``{id}`` is a
``conv_...`` id or a conversation's name. Bounds are checked (``openai_convert``)
before the store is touched; the store's calls are blocking SQL, run off the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from llmkit.api.conversations import openai_convert as cv
from llmkit.api.responses.routes import make_id
from llmkit.errors import ConfigError
from llmkit.memory.item_store import new_public_id
from llmkit.memory.responses import MEMORY, ResponseStore

router = APIRouter(prefix="/v1/conversations", tags=["conversations (OpenAI)"])


def _store(request: Request) -> ResponseStore:
    store = request.app.state.response_store
    if store is None:
        raise ConfigError("This server was started without a conversation store.")
    return store


def _include(request: Request) -> bool:
    # the openai SDK sends arrays as include[]=a&include[]=b; others as include=a
    q = request.query_params
    return cv.check_include([*q.getlist("include"), *q.getlist("include[]")])


@router.post("")
async def create_conversation(
    request: Request, body: cv.CreateConversationBody | None = None
) -> JSONResponse:
    body = body or cv.CreateConversationBody()
    metadata = cv.check_metadata(body.metadata)
    given = cv.read_items(body.items or [], make_id)
    store = _store(request)
    conv_id = new_public_id()

    def create() -> Any:
        # named after its id: `llmkit sessions show conv_...` finds it
        return store.create(
            conv_id, memory=MEMORY, metadata=metadata, initial=given, conv_id=conv_id
        )

    return JSONResponse(cv.to_conversation(await asyncio.to_thread(create)))


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, request: Request) -> JSONResponse:
    conv = await asyncio.to_thread(_store(request).conversation, conversation_id)
    return JSONResponse(cv.to_conversation(conv))


@router.post("/{conversation_id}")
async def update_conversation(
    conversation_id: str, body: cv.UpdateConversationBody, request: Request
) -> JSONResponse:
    metadata = cv.check_metadata(body.metadata)
    conv = await asyncio.to_thread(_store(request).set_metadata, conversation_id, metadata)
    return JSONResponse(cv.to_conversation(conv))


@router.delete("/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request) -> JSONResponse:
    gone = await asyncio.to_thread(_store(request).delete_conversation, conversation_id)
    return JSONResponse(cv.deleted(gone))


@router.get("/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    request: Request,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
) -> JSONResponse:
    sealed = _include(request)
    page, more = await asyncio.to_thread(
        _store(request).list_items, conversation_id, after=after, limit=limit, order=order
    )
    return JSONResponse(cv.item_list(page, more, sealed))


@router.post("/{conversation_id}/items")
async def create_items(
    conversation_id: str, body: cv.CreateItemsBody, request: Request
) -> JSONResponse:
    sealed = _include(request)
    given = cv.read_items(body.items, make_id)
    stored = await asyncio.to_thread(_store(request).append_items, conversation_id, given)
    return JSONResponse(cv.item_list(stored, False, sealed))


@router.get("/{conversation_id}/items/{item_id}")
async def get_item(conversation_id: str, item_id: str, request: Request) -> JSONResponse:
    sealed = _include(request)
    found = await asyncio.to_thread(_store(request).get_item, conversation_id, item_id)
    return JSONResponse(cv.shown(found, sealed))


@router.delete("/{conversation_id}/items/{item_id}")
async def delete_item(conversation_id: str, item_id: str, request: Request) -> JSONResponse:
    conv = await asyncio.to_thread(_store(request).delete_item, conversation_id, item_id)
    return JSONResponse(cv.to_conversation(conv))
