"""A generation that fails after its stream has started: the client gets the
failure as the stream's last event, in its dialect's shape, never a cut stream;
a failure that is not llmkit's own is logged with its traceback and shown to the
client only as a generic message.

The app runs in-process (``httpx.ASGITransport``) on a fake engine, driven by the
real ``openai`` and ``ollama`` clients and by raw HTTP for the exact bytes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import ollama
import openai
import pytest

from llmkit.api.app import create_app
from llmkit.config.settings import ServeSettings
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest
from llmkit.engines.base import Engine
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import ServerBusyError

GENERIC = "Internal server error; see the server log."
HI = [{"role": "user", "content": "hi"}]


class FailingEngine(Engine):
    """Two chunks of text, then ``error`` is raised."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        yield Chunk("Hel", token_ids=(1,))
        yield Chunk("lo", token_ids=(2,))
        raise self.error

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [1]

    async def detokenize(self, ids: list[int]) -> str:
        return "x"

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(engine="failing", model="m", context_length=64)


def served(error: Exception) -> httpx.AsyncClient:
    app = create_app(ServeSettings(), ModelRegistry([ServedModel(["m"], FailingEngine(error))]))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


def post_raw(error: Exception, path: str, body: dict) -> tuple[int, str]:
    """Status and body text of one request to an app whose engine fails with ``error``."""

    async def go() -> tuple[int, str]:
        async with served(error) as client, client.stream("POST", path, json=body) as r:
            return r.status_code, (await r.aread()).decode()

    return asyncio.run(go())


def sse_data(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


OPENAI_STREAMS = [
    ("/v1/chat/completions", {"model": "m", "messages": HI, "stream": True}),
    ("/v1/completions", {"model": "m", "prompt": "hi", "stream": True}),
]


@pytest.mark.parametrize(("path", "body"), OPENAI_STREAMS)
def test_openai_stream_ends_with_an_error_event_then_done(path, body, caplog):
    with caplog.at_level(logging.ERROR, logger="llmkit.api"):
        status, text = post_raw(RuntimeError("the GPU caught fire"), path, body)
    assert status == 200
    *events, error, done = sse_data(text)
    assert len(events) >= 2 and done == "[DONE]"
    assert json.loads(error) == {
        "error": {"message": GENERIC, "type": "server_error", "param": None, "code": None}
    }
    assert "fire" not in text  # internals stay on the server
    [record] = [r for r in caplog.records if r.exc_info]
    assert "the GPU caught fire" in str(record.exc_info[1])


def test_openai_stream_shows_llmkit_errors_as_they_are():
    status, text = post_raw(ServerBusyError("Too busy; try again."), *OPENAI_STREAMS[0])
    error = json.loads(sse_data(text)[-2])["error"]
    assert status == 200 and error["message"] == "Too busy; try again."


def test_the_openai_client_raises_the_error_event():
    async def go() -> str:
        async with served(RuntimeError("boom")) as http:
            client = openai.AsyncOpenAI(
                base_url="http://localhost/v1", api_key="x", http_client=http, max_retries=0
            )
            stream = await client.chat.completions.create(model="m", messages=HI, stream=True)
            got = []
            with pytest.raises(openai.APIError) as e:
                async for chunk in stream:
                    got.append(chunk.choices[0].delta.content or "")
            assert "".join(got) == "Hello"
            return e.value.message

    assert asyncio.run(go()) == GENERIC


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"model": "m", "messages": HI}),
        ("/api/generate", {"model": "m", "prompt": "hi"}),
    ],
)
def test_ollama_stream_ends_with_an_error_line(path, body, caplog):
    with caplog.at_level(logging.ERROR, logger="llmkit.api"):
        status, text = post_raw(KeyError("slot 3"), path, body)
    assert status == 200
    *lines, last = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 2 and all(line["done"] is False for line in lines)
    assert last == {"error": GENERIC}
    assert any(r.exc_info for r in caplog.records)


def test_the_ollama_client_raises_the_error_line():
    async def go() -> str:
        async with served(RuntimeError("boom")) as http:
            client = ollama.AsyncClient(host="http://localhost", transport=http._transport)
            got = []
            with pytest.raises(ollama.ResponseError) as e:
                async for part in await client.chat(model="m", messages=HI, stream=True):
                    got.append(part.message.content)
            assert "".join(got) == "Hello"
            return e.value.error

    assert asyncio.run(go()) == GENERIC


def test_a_failure_before_the_stream_starts_is_a_500_in_the_dialects_shape():
    class FailsAtOnce(FailingEngine):
        async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
            raise self.error
            yield Chunk()  # an async generator, as engines are

    async def go() -> list[httpx.Response]:
        app = create_app(
            ServeSettings(),
            ModelRegistry([ServedModel(["m"], FailsAtOnce(RuntimeError("boom")))]),
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            body = {"model": "m", "messages": HI, "stream": True}
            return [
                await c.post("/v1/chat/completions", json=body),
                await c.post("/api/chat", json=body),
            ]

    o, ol = asyncio.run(go())
    assert o.status_code == ol.status_code == 500
    assert o.json()["error"]["message"] == GENERIC and ol.json() == {"error": GENERIC}
