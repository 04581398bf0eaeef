"""A stand-in reasoning model's server on loopback: it thinks, then answers, in the
protocols the real ones speak, over a real socket.

- OpenAI chat (DeepSeek's API, vLLM with a reasoning parser): streamed
  ``delta.reasoning_content`` pieces, then ``delta.content`` pieces, then usage with
  ``completion_tokens_details.reasoning_tokens``; a whole reply has
  ``message.reasoning_content``. ``reasoning_effort: "none"`` switches the thinking off.
- Ollama ``/api/chat``: ``message.thinking`` pieces, then ``message.content``; ``think:
  false`` switches it off.
- Anthropic ``/v1/messages``: a ``thinking`` block (``thinking_delta`` pieces and its
  ``signature_delta``), then a ``text`` block; it thinks only when the request has
  ``thinking: {"type": "enabled", ...}``, as Anthropic's models do.

No reasoning model runs here, and the server side that produces these fields is
built elsewhere; this is what llmkit's client, ``Chat``, the upstream engine and the
chat page are held to. ``gate``: when set to an unset ``threading.Event``, a reply
stops after its thinking (``thought`` is set) and waits for the test to set it
before the answer comes, so a test sees the thinking live, with no sleeps.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "thinker"
THINKING = ("The user greets me. ", "A short greeting back ", "will do.")
ANSWER = ("Hello", " there", "!")
CONTEXT = 4096


class Thinker:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # the generation bodies, in order
        self.gate: threading.Event | None = None
        self.thought = threading.Event()  # a gated reply has sent all its thinking
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/api/tags", self._tags),
                Route("/api/show", self._show, methods=["POST"]),
                Route("/api/ps", self._ps),
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/api/chat", self._ollama, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        card = {"id": MODEL, "object": "model", "owned_by": "standin", "max_model_len": CONTEXT}
        return JSONResponse({"object": "list", "data": [card]})

    async def _tags(self, _: Request) -> Response:
        return JSONResponse({"models": [{"name": f"{MODEL}:latest", "model": f"{MODEL}:latest"}]})

    async def _show(self, _: Request) -> Response:
        return JSONResponse({"model_info": {"qwen3.context_length": CONTEXT}, "details": {}})

    async def _ps(self, _: Request) -> Response:
        return JSONResponse({"models": []})

    async def _pieces(self, thinks: bool) -> AsyncIterator[tuple[str, str]]:
        """("thinking" | "content", text), in order, waiting at the gate between."""
        if thinks:
            for t in THINKING:
                yield "thinking", t
            if self.gate is not None:
                self.thought.set()
                await asyncio.to_thread(self.gate.wait, 120)
        for t in ANSWER:
            yield "content", t

    async def _openai(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        thinks = body.get("reasoning_effort") != "none"
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            if thinks:
                message["reasoning_content"] = "".join(THINKING)
            return JSONResponse(_completion(message, "chat.completion", thinks, "message"))

        async def events() -> AsyncIterator[bytes]:
            first = {"role": "assistant", "content": ""}
            yield _sse(_completion(first, "chat.completion.chunk"))
            async for kind, text in self._pieces(thinks):
                delta = (
                    {"reasoning_content": text, "content": None}
                    if kind == "thinking"
                    else {"content": text, "reasoning_content": None}
                )
                yield _sse(_completion(delta, "chat.completion.chunk"))
            end = _completion({}, "chat.completion.chunk")
            end["choices"][0]["finish_reason"] = "stop"
            yield _sse(end)
            tail = _completion({}, "chat.completion.chunk", thinks)
            tail["choices"] = []
            yield _sse(tail)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _ollama(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        thinks = body.get("think") is not False

        async def lines() -> AsyncIterator[bytes]:
            async for kind, text in self._pieces(thinks):
                message = {"role": "assistant", "content": text if kind == "content" else ""}
                if kind == "thinking":
                    message["thinking"] = text
                yield _line({"model": MODEL, "message": message, "done": False})
            last = {"model": MODEL, "message": {"role": "assistant", "content": ""}}
            last.update(done=True, done_reason="stop", prompt_eval_count=12)
            last["eval_count"] = len(ANSWER) + (len(THINKING) if thinks else 0)
            yield _line(last)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def _anthropic(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({**body, "headers": dict(request.headers)})
        thinks = (body.get("thinking") or {}).get("type") == "enabled"

        async def events() -> AsyncIterator[bytes]:
            usage = {"input_tokens": 12, "output_tokens": 1}
            message = {"id": "msg_standin", "type": "message", "role": "assistant",
                       "model": MODEL, "content": [], "usage": usage}  # fmt: skip
            message["stop_reason"] = None
            yield _event("message_start", {"message": message})
            index, open_kind = -1, None
            async for kind, text in self._pieces(thinks):
                if kind != open_kind:
                    if open_kind == "thinking":
                        sig = {"type": "signature_delta", "signature": "c3RhbmRpbg=="}
                        yield _event("content_block_delta", {"index": index, "delta": sig})
                    if open_kind is not None:
                        yield _event("content_block_stop", {"index": index})
                    index, open_kind = index + 1, kind
                    block = (
                        {"type": "thinking", "thinking": "", "signature": ""}
                        if kind == "thinking"
                        else {"type": "text", "text": ""}
                    )
                    yield _event("content_block_start", {"index": index, "content_block": block})
                delta = (
                    {"type": "thinking_delta", "thinking": text}
                    if kind == "thinking"
                    else {"type": "text_delta", "text": text}
                )
                yield _event("content_block_delta", {"index": index, "delta": delta})
            yield _event("content_block_stop", {"index": index})
            spent = len(ANSWER) + (len(THINKING) if thinks else 0)
            yield _event(
                "message_delta",
                {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": spent}},
            )  # fmt: skip
            yield _event("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")


def _event(kind: str, data: dict[str, Any]) -> bytes:
    """An Anthropic server-sent event: its type named twice, as Anthropic sends it."""
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def _completion(
    part: dict[str, Any], kind: str, usage_with_thinking: bool | None = None, key: str = "delta"
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-standin",
        "object": kind,
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, key: part, "finish_reason": None}],
    }
    if key == "message":
        out["choices"][0]["finish_reason"] = "stop"
    if usage_with_thinking is not None:
        reasoning = len(THINKING) if usage_with_thinking else 0
        out["usage"] = {
            "prompt_tokens": 12,
            "completion_tokens": len(ANSWER) + reasoning,
            "total_tokens": 12 + len(ANSWER) + reasoning,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    return out


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj) + "\n").encode()
