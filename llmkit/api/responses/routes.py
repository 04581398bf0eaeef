"""The Responses API routes (``/v1/responses``): HTTP only.

A request is read (``convert``), its history gathered from the store and fitted
to the context (``history``), run on its model's engine, and answered as a
``Response`` (``replies``) or as typed events (``stream``). A stored response is
written once it has finished, in one transaction: a failed or abandoned one
leaves nothing behind. The store's calls are blocking SQL, so they run off the loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from llmkit.api import limits
from llmkit.api.generation import served, start
from llmkit.api.images import read_images
from llmkit.api.mcp.loop import ToolBox
from llmkit.api.openai.replies import Head
from llmkit.api.responses import convert, mcp_run, replies
from llmkit.api.responses.history import fit
from llmkit.api.responses.schemas import ResponseCreateRequest
from llmkit.api.responses.stream import to_events
from llmkit.api.streaming import named, sse
from llmkit.core.types import Message
from llmkit.engines.registry import ServedModel
from llmkit.errors import InvalidRequestError, LlmkitError
from llmkit.memory.items import to_messages
from llmkit.memory.responses import MEMORY, ResponseStore
from llmkit.memory.strategies import parse_strategy

router = APIRouter(prefix="/v1")


def make_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _store(request: Request) -> ResponseStore:
    store = request.app.state.response_store
    if store is None:
        raise InvalidRequestError(
            "This server keeps no response store: send store: false, without previous_response_id.",
            param="store",
        )
    return store


async def _history(
    request: Request, previous: str | None, conversation: str | None
) -> tuple[list[Message], str, str | None]:
    """The messages of ``previous`` and its ancestors, or of ``conversation``'s
    items; the memory strategy of their conversation (a new chain's default for
    none); the conversation's id when one was named."""
    if conversation is not None:
        store = _store(request)
        conv, stored = await asyncio.to_thread(store.all_items, conversation, param="conversation")
        return to_messages(stored), conv.memory, conv.id
    if previous is None:
        return [], MEMORY, None
    store = _store(request)
    chain = await asyncio.to_thread(store.chain, previous, param="previous_response_id")
    conv = await asyncio.to_thread(store.get, chain[-1].conversation)
    return [m for turn in chain for m in turn.messages], conv.memory, None


@router.post("/responses", response_model=None)
async def create_response(body: ResponseCreateRequest, request: Request) -> Response:
    limits.check(request, body.sizes())  # before the stored history is read
    conversation = body.conversation_id()
    model = served(request, body.model)
    pics = await read_images(request, body.image_refs(), model, asked_as=body.model)
    turn = convert.from_request(body, make_id, pics)
    if conversation is not None:  # the items join it: their ids are the store's keys
        for i, item in enumerate(turn.items):
            if not isinstance(item["id"], str) or len(item["id"]) > 64:
                raise InvalidRequestError(
                    f"input.{i}.id must be a string of at most 64 characters.",
                    param=f"input.{i}.id",
                )
    store = _store(request) if turn.echo["store"] else None
    history, memory, conv_id = await _history(request, body.previous_response_id, conversation)
    if conv_id is not None:
        turn.echo["conversation"] = {"id": conv_id}
    box, listed = await mcp_run.offer(request, turn, make_id) if turn.mcp else (None, [])
    offered = (*turn.tools, *(box.tools if box else ())) if turn.tool_choice != "none" else ()
    messages = await fit(
        model.engine,
        [*history, *turn.messages],
        instructions=body.instructions,
        strategy=parse_strategy(memory),
        tools=offered,
        max_output_tokens=body.max_output_tokens,
    )
    gen = start(
        request,
        model,
        lambda: [convert.to_generate_request(turn, messages, body.max_output_tokens)],
        None,
        think_param="reasoning.effort",
    )
    head = Head(make_id("resp"), int(time.time()), body.model)

    async def keep(response: dict[str, Any], reply: Message | list[Message]) -> None:
        # ``reply``: the answer, or every message a tool loop added (calls, results).
        added = reply if isinstance(reply, list) else [reply]
        if store is not None:
            await asyncio.to_thread(
                store.save,
                head.id,
                previous_id=body.previous_response_id,
                model=body.model,
                input_items=turn.items,
                response=response,
                messages=[*turn.messages, *added],
                conversation=conv_id,
            )
        elif conv_id is not None:  # not stored, but its conversation still grows
            added = [*turn.items, *response["output"]]
            await asyncio.to_thread(_store(request).append_items, conv_id, added)

    if box is not None:
        return await _with_tools(request, model, turn, messages, box, listed, head, keep, body)
    if body.stream:
        events = to_events(head, turn, await gen.streamed(), make_id, keep)
        return sse(events, frame=named, error=_error_event)
    ((text, last),) = await gen.whole()
    output, reply = replies.to_output(text, last, make_id, sealed=turn.sealed)
    status = "incomplete" if last.finish_reason == "length" else "completed"
    response = replies.to_response(
        head, turn, status=status, output=output, usage=last.usage, completed_at=int(time.time())
    )
    await keep(response, reply)
    return JSONResponse(response)


async def _with_tools(
    request: Request,
    model: ServedModel,
    turn: convert.Turn,
    messages: tuple[Message, ...],
    box: ToolBox,
    listed: list[dict[str, Any]],
    head: Head,
    keep: Callable[[dict[str, Any], list[Message]], Awaitable[None]],
    body: ResponseCreateRequest,
) -> Response:
    """A response that runs MCP tools (``mcp_run``), streamed or whole."""

    def run(reraise: bool) -> AsyncIterator[dict[str, Any]]:
        return mcp_run.events(
            request,
            model,
            turn,
            messages,
            box,
            listed,
            head,
            make_id,
            body.max_output_tokens,
            keep,
            reraise=reraise,
        )

    if body.stream:
        return sse(run(False), frame=named, error=_error_event)
    last: dict[str, Any] = {}
    async for event in run(True):
        last = event
    return JSONResponse(last["response"])


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> JSONResponse:
    found = await asyncio.to_thread(_store(request).response, response_id)
    return JSONResponse(found.response)


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> JSONResponse:
    await asyncio.to_thread(_store(request).remove, response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    request: Request,
    order: Literal["asc", "desc"] = "desc",
    limit: int = Query(default=20, ge=1, le=100),
    after: str | None = None,
) -> JSONResponse:
    """Everything the model was given for this response: each ancestor's input and
    output items, then its own input (the instructions are no item)."""
    chain = await asyncio.to_thread(_store(request).chain, response_id)
    items = [it for turn in chain[:-1] for it in [*turn.input_items, *turn.response["output"]]]
    items += chain[-1].input_items
    return JSONResponse(replies.input_item_list(items, order=order, limit=limit, after=after))


def _error_event(e: LlmkitError) -> dict[str, str]:
    # Only a bug gets here (``to_events`` ends its own failures); still a last event.
    return named({"type": "error", "sequence_number": 0, "code": e.code, "message": e.message})
