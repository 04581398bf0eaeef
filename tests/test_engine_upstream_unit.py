"""The upstream engine over scripted servers (``httpx.MockTransport``): what it
says of the model, the refusal of a model the upstream does not serve, replies
as chunks with stop strings held back, errors mid-reply, tokenizing where the
upstream can, and a dead upstream. ``test_engine_upstream`` runs the same engine
against a real second server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from llmkit.core.types import Chunk, GenerateRequest, Message, Usage
from llmkit.engines.upstream.engine import UpstreamEngine
from llmkit.errors import (
    ContextLengthError,
    InvalidRequestError,
    ModelSpecError,
    UnreachableError,
    UpstreamError,
)

T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]
HI = GenerateRequest(messages=(Message("user", "hi"),), max_tokens=8)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def sse(*events: dict | str) -> str:
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def text_event(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"delta": {"content": text}, "finish_reason": finish}]}


def llmkit_like(reply: str) -> httpx.MockTransport:
    return httpx.MockTransport(llmkit_handler(reply))


def llmkit_handler(reply: str) -> Handler:
    """An OpenAI-style server that says its context and has /tokenize (llmkit, vLLM)."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 256}]})
        if path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2, 3], "count": 3})
        if path == "/detokenize":
            return httpx.Response(200, json={"prompt": "abc"})
        if path == "/v1/chat/completions":
            usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}
            events = [text_event(w) for w in reply.split("|")]
            return httpx.Response(200, text=sse(*events, text_event("", "length"), usage, "[DONE]"))
        return httpx.Response(404, json={"detail": "Not Found"})

    return handler


def an_ollama(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/api/tags":
        return httpx.Response(200, json={"models": [{"name": "llama3.2:latest", "size": 2019}]})
    if path == "/api/show":
        details = {"format": "gguf", "family": "llama", "quantization_level": "Q4_K_M"}
        info = {"llama.context_length": 131072}
        return httpx.Response(200, json={"details": details, "model_info": info})
    if path == "/api/ps":
        return httpx.Response(200, json={"models": []})
    if path == "/api/chat":
        lines = [
            {"message": {"content": "Hi!"}, "done": False},
            {"message": {"content": ""}, "done": True, "prompt_eval_count": 9, "eval_count": 1},
        ]
        return httpx.Response(200, text="\n".join(json.dumps(x) for x in lines))
    return httpx.Response(404, text="404 page not found")


async def started(
    transport: httpx.AsyncBaseTransport, model: str = "m", **kw: object
) -> UpstreamEngine:
    engine = UpstreamEngine("http://up:8000", model=model, transport=transport, **kw)  # type: ignore[arg-type]
    await engine.start()
    return engine


async def over(handler: Handler) -> list[Chunk]:
    return await reply(await started(httpx.MockTransport(handler)))


async def reply(engine: UpstreamEngine, req: GenerateRequest = HI) -> list[Chunk]:
    try:
        return [c async for c in engine.generate(req)]
    finally:
        await engine.close()


def test_an_openai_style_upstream_that_says_its_context():
    async def go() -> tuple[UpstreamEngine, list[Chunk]]:
        engine = await started(llmkit_like("Hel|lo"))
        return engine, await reply(engine)

    engine, chunks = run(go())
    assert engine.dialect == "openai"
    assert (engine.info.engine, engine.info.context_length) == ("upstream", 256)
    assert engine.info.details == {"upstream": "http://up:8000", "dialect": "openai"}
    assert "".join(c.text for c in chunks) == "Hello"
    assert chunks[-1] == Chunk(finish_reason="length", usage=Usage(4, 3))


def test_stop_strings_are_held_back_and_cut():
    async def go() -> list[Chunk]:
        req = GenerateRequest(messages=HI.messages, stop=("END",))
        return await reply(await started(llmkit_like("Hi E|ND more")), req)

    chunks = run(go())
    assert "".join(c.text for c in chunks) == "Hi " and chunks[-1].finish_reason == "stop"


def test_an_ollama_upstream_is_described_from_its_own_api():
    async def go() -> tuple[UpstreamEngine, list[Chunk]]:
        engine = UpstreamEngine(
            "http://ollama:11434", model="llama3.2", transport=httpx.MockTransport(an_ollama)
        )
        await engine.start()
        return engine, await reply(engine)

    engine, chunks = run(go())
    info = engine.info
    assert engine.dialect == "ollama" and info.context_length == 8192
    assert (info.format, info.family, info.quantization, info.size_bytes) == (
        "gguf",
        "llama",
        "Q4_K_M",
        2019,
    )
    assert "".join(c.text for c in chunks) == "Hi!" and chunks[-1].usage == Usage(9, 1)


def test_a_model_the_upstream_does_not_serve_is_refused():
    with pytest.raises(ModelSpecError) as e:
        run(started(llmkit_like(""), model="gone"))
    assert "does not serve 'gone'; it serves: m." in e.value.message


def test_an_error_mid_reply_comes_back_as_itself():
    too_long = {
        "error": {"message": "too long", "type": "invalid_request_error",
                  "param": "messages", "code": "context_length_exceeded"},
        "details": {"prompt_tokens": 300, "max_tokens": 8, "context_length": 256},
    }  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            return httpx.Response(200, text=sse(text_event("a"), too_long, "[DONE]"))
        return llmkit_handler("")(request)

    with pytest.raises(ContextLengthError) as e:
        run(over(handler))
    assert (e.value.prompt_tokens, e.value.context_length, e.value.message) == (
        300,
        256,
        "too long",
    )


def test_tokenize_where_the_upstream_can():
    async def go() -> tuple[list[int], str, list[int] | None]:
        engine = await started(llmkit_like(""))
        try:
            return (
                await engine.tokenize("abc"),
                await engine.detokenize([1, 2, 3]),
                await engine.encode(HI),
            )
        finally:
            await engine.close()

    assert run(go()) == ([1, 2, 3], "abc", [1, 2, 3])

    async def ollama() -> None:
        engine = UpstreamEngine(
            "ollama://o:11434", model="llama3.2", transport=httpx.MockTransport(an_ollama)
        )
        await engine.start()
        try:
            assert await engine.encode(HI) is None
            await engine.tokenize("abc")
        finally:
            await engine.close()

    with pytest.raises(InvalidRequestError) as e:
        run(ollama())
    assert e.value.message == "This model's (Ollama) server cannot tokenize text."


def test_an_upstream_without_tokenize_says_so():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(404, json={"detail": "Not Found"})

    async def go() -> None:
        engine = await started(httpx.MockTransport(handler), dialect="openai")
        try:
            assert await engine.encode(HI) is None
            await engine.detokenize([1])
        finally:
            await engine.close()

    with pytest.raises(InvalidRequestError) as e:
        run(go())
    assert e.value.message == "The upstream server http://up:8000 has no /detokenize endpoint."


def test_a_dead_upstream_starts_and_answers_502_naming_it():
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed")

    async def go() -> UpstreamEngine:
        engine = await started(httpx.MockTransport(refused))  # starts all the same
        assert engine.info.context_length == 0
        await reply(engine)
        return engine

    with pytest.raises(UnreachableError) as e:
        run(go())
    assert e.value.status == 502
    assert e.value.message.startswith("The upstream server http://up:8000 is not answering")


def test_a_reply_cut_short_names_the_upstream():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            return httpx.Response(200, text=sse(text_event("a")))
        return llmkit_handler("")(request)

    with pytest.raises(UpstreamError) as e:
        run(over(handler))
    assert e.value.message == "The upstream server http://up:8000 ended the reply before its end."
