"""Fast tests of ``llmkit.client`` with scripted servers (``httpx.MockTransport``):
dialect detection, Ollama-only and OpenAI-only servers, error mapping, stream
parsing. The end-to-end tests drive the same client against real servers."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from llmkit.client import protocol as p
from llmkit.client.http import AsyncClient, Client
from llmkit.core.types import Message
from llmkit.errors import AuthenticationError, InvalidRequestError, NotFoundError, UpstreamError

HI = [Message("user", "hi")]


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


def test_neither_dialect_is_a_clear_error():
    c = Client("http://nginx", transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    with pytest.raises(UpstreamError) as e:
        c.models()
    assert "neither /v1/models" in e.value.message and "--dialect" in e.value.message


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


@pytest.mark.parametrize(
    ("dialect", "line", "expected"),
    [
        ("openai", ": keep-alive", None),
        ("openai", "data: [DONE]", p.Delta(done=True)),
        (
            "openai",
            'data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}',
            p.Delta(text="x"),
        ),
        (
            "openai",
            'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}',
            p.Delta(usage=p.Usage(3, 4)),
        ),
        ("ollama", '{"response":"y","done":false}', p.Delta(text="y")),
    ],
)
def test_stream_lines(dialect, line, expected):
    assert p.parse_line(dialect, line) == expected


def test_an_error_in_the_middle_of_a_stream_raises():
    with pytest.raises(UpstreamError):
        p.parse_line("ollama", '{"error": "model crashed"}')
    with pytest.raises(UpstreamError):
        p.parse_line("openai", 'data: {"error": {"message": "engine died"}}')
