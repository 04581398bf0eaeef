"""Fast tests of ``llmkit.client`` with scripted servers (``httpx.MockTransport``):
dialect detection, Ollama-only and OpenAI-only servers, what ``Chat`` sends,
stream parsing, errors mid-stream, and httpx's failures as llmkit's. The
end-to-end tests drive the same client against real servers; the error bodies
per code are in ``test_client_errors``, the request bodies in ``test_client_bodies``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from llmkit.client import protocol as p
from llmkit.client.http import AsyncClient, Client
from llmkit.client.stream import ReplyReader
from llmkit.core.types import Chunk, GenerateRequest, Message, Usage
from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ServerBusyError,
    UnreachableError,
    UpstreamError,
    UpstreamTimeoutError,
)

HI = [Message("user", "hi")]
Handler = Callable[[httpx.Request], httpx.Response]


def ollama_only(request: httpx.Request) -> httpx.Response:
    """An Ollama: no /v1, and no /tokenize."""
    path = request.url.path
    if path == "/api/tags":
        return httpx.Response(200, json={"models": [{"name": "llama3.2:latest"}]})
    if path == "/api/show":
        return httpx.Response(200, json={"model_info": {"llama.context_length": 131072}})
    if path == "/api/ps":
        return httpx.Response(200, json={"models": []})
    if path == "/api/chat":
        body = json.loads(request.content)
        assert body["options"]["num_ctx"] == p.OLLAMA_MAX_CTX  # never the full 128k
        lines = [
            {"message": {"role": "assistant", "content": "Hel"}, "done": False},
            {"message": {"role": "assistant", "content": "lo"}, "done": False},
            {
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 5,
                "eval_count": 2,
            },
        ]
        return httpx.Response(200, text="\n".join(json.dumps(x) for x in lines))
    return httpx.Response(404, text="404 page not found")


def test_an_ollama_server_is_detected_and_spoken_to():
    c = Client("http://ollama:11434", transport=httpx.MockTransport(ollama_only))
    assert c.dialect == "ollama"
    assert c.models() == ["llama3.2:latest"]
    assert c.context_length("llama3.2:latest") == p.OLLAMA_MAX_CTX
    assert c.count_tokens("llama3.2:latest", HI) is None  # the caller estimates
    deltas = list(c.stream_chat("llama3.2:latest", HI))
    assert "".join(d.text for d in deltas) == "Hello"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage.completion_tokens == 2


def test_the_async_twin_asks_the_same_questions():
    async def go() -> tuple[str, list[str], str]:
        c = AsyncClient("http://ollama:11434", transport=httpx.MockTransport(ollama_only))
        text = "".join([d.text async for d in c.stream_chat("llama3.2:latest", HI)])
        out = (await c.dialect(), await c.models(), text)
        await c.aclose()
        return out

    assert asyncio.run(go()) == ("ollama", ["llama3.2:latest"], "Hello")


# -- which dialect: one rule ----------------------------------------------------------

RICH = {"data": [{"id": "m", "max_model_len": 4096}]}  # llmkit, vLLM
PLAIN = {"object": "list", "data": [{"id": "m"}]}  # a hosted API, Ollama's /v1
TAGS = {"models": [{"name": "m"}]}


def scripted(answers: dict[str, object], asked: list[str] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if asked is not None:
            asked.append(request.url.path)
        answer = answers.get(request.url.path, 404)
        if isinstance(answer, int):
            return httpx.Response(answer, json={"error": "no"})
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("answers", "dialect", "asked"),
    [
        # llmkit and vLLM: OpenAI's listing says the context; Ollama's is not asked.
        ({"/v1/models": RICH, "/api/tags": TAGS}, "openai", ["/v1/models"]),
        # Ollama answers both, and says more in its own dialect (num_ctx, /api/show).
        ({"/v1/models": PLAIN, "/api/tags": TAGS}, "ollama", ["/v1/models", "/api/tags"]),
        ({"/v1/models": PLAIN}, "openai", ["/v1/models", "/api/tags"]),
        ({"/api/tags": TAGS}, "ollama", ["/v1/models", "/api/tags"]),
        ({"/v1/models": 401, "/api/tags": TAGS}, "ollama", ["/v1/models", "/api/tags"]),
    ],
)
def test_the_dialect_rule(answers, dialect, asked):
    calls: list[str] = []
    c = Client("http://h", transport=scripted(answers, calls))
    assert c.dialect == dialect and calls == asked
    assert c.models() == ["m"] and calls == asked  # the listing is not asked again


def test_a_dialect_named_by_the_url_or_the_caller_is_not_asked():
    calls: list[str] = []
    c = Client("ollama://h:11434", transport=scripted({"/api/tags": TAGS}, calls))
    assert c.url == "http://h:11434" and c.dialect == "ollama" and calls == []
    c = Client("http://h", dialect="openai", transport=scripted({"/v1/models": PLAIN}, calls))
    assert c.models() == ["m"] and calls == ["/v1/models"]
    with pytest.raises(InvalidRequestError):
        Client("http://h", dialect="grpc")  # type: ignore[arg-type]


def test_neither_dialect_is_a_clear_error():
    c = Client("http://nginx", transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    with pytest.raises(UpstreamError) as e:
        c.models()
    assert "neither /v1/models" in e.value.message and "--dialect" in e.value.message


def test_a_wrong_key_says_so_rather_than_neither():
    c = Client("http://h", transport=scripted({"/v1/models": 401, "/api/tags": 401}))
    with pytest.raises(AuthenticationError):
        c.models()


# -- what Chat sends ------------------------------------------------------------------


def recording(dialect: str, sent: list[dict]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path in ("/api/show", "/api/ps", "/api/tags"):
            return ollama_only(request)
        sent.append(json.loads(request.content))
        if dialect == "ollama":
            return httpx.Response(200, json={"done": True, "eval_count": 0})
        return httpx.Response(200, text="data: [DONE]\n\n")

    return httpx.MockTransport(handler)


def test_chat_sends_only_what_its_user_set():
    sent: list[dict] = []
    c = Client("openai://h/v1", transport=recording("openai", sent))
    list(c.stream_chat("m", HI))
    list(c.stream_chat("m", HI, max_tokens=5, temperature=0.8))
    msgs = [{"role": "user", "content": "hi"}]
    base = {"model": "m", "messages": msgs, "stream": True}
    usage = {"stream_options": {"include_usage": True}}
    assert sent == [{**base, **usage}, {**base, **usage, "max_tokens": 5, "temperature": 0.8}]
    sent.clear()
    c = Client("ollama://h", transport=recording("ollama", sent))
    list(c.stream_chat("llama3.2:latest", HI, temperature=0.2))
    ctx = p.OLLAMA_MAX_CTX
    assert sent == [
        {"model": "llama3.2:latest", "messages": msgs, "stream": True,
         "options": {"temperature": 0.2, "num_ctx": ctx}},
    ]  # fmt: skip


# -- streams --------------------------------------------------------------------------


def read(dialect: p.Dialect, lines: list[str]) -> list[Chunk]:
    reader = ReplyReader(dialect, "http://h")
    return [c for line in lines for c in reader.feed(line)] + reader.end()


@pytest.mark.parametrize(
    ("dialect", "lines", "expected"),
    [
        ("openai", [": keep-alive"], []),
        ("openai", ["data: [DONE]"], [Chunk(finish_reason="stop", usage=Usage(0, 0))]),
        (
            "openai",
            ['data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}'],
            [Chunk(text="x")],
        ),
        (  # OpenAI sends finish_reason and usage apart: they come out together, last
            "openai",
            [
                'data: {"choices":[{"delta":{"content":"x"},"finish_reason":"length"}]}',
                'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}',
                "data: [DONE]",
                'data: {"choices":[{"text":"after the end"}]}',
            ],
            [Chunk(text="x"), Chunk(finish_reason="length", usage=Usage(3, 4))],
        ),
        (
            "openai",  # /v1/completions, and a server that closes without [DONE]
            ['data: {"choices":[{"text":"y","finish_reason":"stop"}]}'],
            [Chunk(text="y"), Chunk(finish_reason="stop", usage=Usage(0, 1))],
        ),
        ("ollama", ['{"response":"y","done":false}'], [Chunk(text="y")]),
        (
            "ollama",
            ['{"response":"y","done":true,"done_reason":"length","eval_count":1}'],
            [Chunk(text="y"), Chunk(finish_reason="length", usage=Usage(0, 1))],
        ),
    ],
)
def test_stream_lines(dialect, lines, expected):
    reader = ReplyReader(dialect, "http://h")
    got = [c for line in lines for c in reader.feed(line)]
    if expected and expected[-1].finish_reason:
        got += reader.end()
    assert got == expected


def test_an_error_in_the_middle_of_a_stream_raises():
    with pytest.raises(UpstreamError):
        ReplyReader("ollama").feed('{"error": "model crashed"}')
    with pytest.raises(UpstreamError):
        ReplyReader("openai").feed('data: {"error": {"message": "engine died"}}')
    busy = '{"error": "busy", "code": "server_busy", "details": {"retry_after": 7}}'
    with pytest.raises(ServerBusyError) as e:
        ReplyReader("ollama").feed(busy)
    assert e.value.retry_after == 7 and e.value.message == "busy"


def test_a_reply_that_stops_short_is_an_error():
    with pytest.raises(UpstreamError) as e:
        read("ollama", ['{"response":"y","done":false}'])
    assert e.value.message == "http://h ended the reply before its end."


@pytest.mark.parametrize(
    ("status", "body", "cls", "text"),
    [
        (400, {"error": {"message": "too long", "type": "x"}}, InvalidRequestError, "too long"),
        (401, {"error": {"message": "bad key"}}, AuthenticationError, "bad key"),
        (404, {"error": 'model "x" not found'}, NotFoundError, "not found"),
        (500, {"detail": "boom"}, UpstreamError, "answered 500: boom"),
    ],
)
def test_http_errors_come_back_as_llmkit_errors(status, body, cls, text):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 100}]})
        return httpx.Response(status, json=body)

    c = Client("http://h/v1/", transport=httpx.MockTransport(handler))
    assert c.url == "http://h" and c.context_length("m") == 100
    with pytest.raises(cls) as e:
        list(c.stream_chat("m", HI))
    assert text in e.value.message


# -- httpx's failures -----------------------------------------------------------------


class Breaks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A reply that sends one line and then fails with ``error``."""

    def __init__(self, line: bytes, error: Exception) -> None:
        self.line, self.error = line, error

    def __iter__(self) -> Iterator[bytes]:
        yield self.line
        raise self.error

    async def __aiter__(self):  # type: ignore[override]
        yield self.line
        raise self.error


def failing(error: Exception, *, mid_reply: bool) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if not mid_reply:
            raise error
        if request.url.path not in ("/api/chat", "/api/generate"):
            return ollama_only(request)
        line = b'{"response":"a","done":false}\n'
        return httpx.Response(200, stream=Breaks(line, error))

    return handler


@pytest.mark.parametrize(
    ("error", "mid_reply", "cls", "message"),
    [
        (httpx.ConnectError("refused"), False, UnreachableError, "Cannot reach http://h "),
        (httpx.ConnectTimeout("slow"), False, UnreachableError, "(ConnectTimeout: slow)"),
        (
            httpx.ReadTimeout("t"),
            True,
            UpstreamTimeoutError,
            "http://h stopped answering mid-reply.",
        ),
        (
            httpx.RemoteProtocolError("peer closed"),
            True,
            UpstreamError,
            "The connection to http://h broke mid-reply (RemoteProtocolError).",
        ),
    ],
)
def test_httpx_failures_become_llmkit_errors(error, mid_reply, cls, message):
    got: list[str] = []
    c = Client("ollama://h", transport=httpx.MockTransport(failing(error, mid_reply=mid_reply)))
    with pytest.raises(cls) as e:
        for chunk in c.stream("m", GenerateRequest(prompt="x")):
            got.append(chunk.text)
    assert type(e.value) is cls and message in e.value.message
    assert isinstance(e.value.__cause__, type(error))
    assert got == (["a"] if mid_reply else [])

    async def go() -> None:
        transport = httpx.MockTransport(failing(error, mid_reply=mid_reply))
        a = AsyncClient("ollama://h", transport=transport)
        try:
            async for _ in a.stream_chat("m", HI):
                pass
        finally:
            await a.aclose()

    with pytest.raises(cls) as e:
        asyncio.run(go())
    assert message in e.value.message
