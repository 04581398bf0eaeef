"""Images on the wire, in every dialect, through the real clients.

An app in this process serves ``Seer`` (``tests/vision_toy.py``), which answers
with the images it was handed, on a real socket; the ``openai``, ``anthropic``
and ``ollama`` clients send image files made here, and each reply must name
exactly those files (their SHA-256 and size, computed here), in order. Then
every way an image can be wrong gets its dialect's 400 before any work, URLs
included (served by a small image server on loopback: a slow one, a huge one, a
missing one). Images to the bundled text-only model are refused naming it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from collections.abc import Iterator

import anthropic
import httpx
import ollama
import openai
import pytest
from PIL import Image as PILImage
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llmkit.api.app import create_app
from llmkit.client.http import Client
from llmkit.config.settings import ServeSettings
from llmkit.core.images import from_bytes
from llmkit.core.types import Message
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import VisionUnsupportedError
from tests.conftest import serving
from tests.vision_toy import Seer, picture, seen

RED = picture("red", (8, 6), "PNG")
BLUE = picture("blue", (5, 7), "JPEG")
GREEN = picture("green", (4, 4), "WEBP")
GIF = picture("yellow", (3, 2), "GIF")
LIMIT_BYTES = 10 * 1024


def _noise(side: int = 80) -> bytes:
    img = PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


NOISE = _noise()  # ~19 KB, 6,400 pixels: over the byte limit, under the pixel limit
WIDE = picture("red", (200, 200))  # small file, 40,000 pixels: over the pixel limit


def image(data: bytes):  # type: ignore[no-untyped-def]
    return from_bytes(data, param="test")


def uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- the servers ---------------------------------------------------------------------------


async def _hang(request):  # type: ignore[no-untyped-def]
    async def body():  # type: ignore[no-untyped-def]
        yield b"\x89PNG"
        await asyncio.Event().wait()  # never more: the fetch must give up by its own clock

    return StreamingResponse(body(), media_type="image/png")


async def _unsized(request):  # type: ignore[no-untyped-def]
    async def body():  # type: ignore[no-untyped-def]
        for _ in range(256):  # 1 MiB, a hundred times the limit
            yield b"\0" * 4096

    return StreamingResponse(body(), media_type="image/png")  # no Content-Length


IMAGES_APP = Starlette(
    routes=[
        Route("/red.png", lambda r: Response(RED, media_type="image/png")),
        Route("/blue.jpg", lambda r: Response(BLUE, media_type="image/jpeg")),
        Route("/noise.png", lambda r: Response(NOISE, media_type="image/png")),
        Route("/missing.png", lambda r: Response(b"no", status_code=404)),
        Route("/hang.png", _hang),
        Route("/unsized.png", _unsized),
    ]
)


@pytest.fixture(scope="module")
def images_url() -> Iterator[str]:
    with serving(IMAGES_APP) as url:
        yield url


def _app(**settings: object):  # type: ignore[no-untyped-def]
    registry = ModelRegistry([ServedModel(["seer"], Seer())])
    return create_app(ServeSettings(**settings), registry)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """Fetching allowed, small limits (so a test file can be over them)."""
    app = _app(
        max_images=4,
        max_image_mb=LIMIT_BYTES / 1024 / 1024,
        max_image_pixels=100 * 100,
        image_fetch=True,
        image_fetch_timeout=1.0,
    )
    with serving(app) as u:
        yield u


@pytest.fixture(scope="module")
def closed_url() -> Iterator[str]:
    """The defaults: no fetching."""
    with serving(_app()) as u:
        yield u


# -- every dialect carries images --------------------------------------------------------


def test_openai_chat_images_in_order_with_detail_across_messages(url):
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": uri(RED)}},
                {"type": "text", "text": "and"},
                {
                    "type": "image_url",
                    "image_url": {"url": uri(BLUE, "image/jpeg"), "detail": "low"},
                },
            ],
        },
        {"role": "assistant", "content": "two"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "more"},
                {
                    "type": "image_url",
                    "image_url": {"url": uri(GREEN, "image/webp"), "detail": "high"},
                },
                {"type": "image_url", "image_url": {"url": uri(GIF, "image/gif")}},
            ],
        },
    ]
    out = client.chat.completions.create(model="seer", messages=messages)
    got = json.loads(out.choices[0].message.content)
    assert got == [
        ["user", "and", [seen(RED, "image/png", (8, 6)), seen(BLUE, "image/jpeg", (5, 7), "low")]],
        ["assistant", "two", []],
        [
            "user",
            "more",
            [seen(GREEN, "image/webp", (4, 4), "high"), seen(GIF, "image/gif", (3, 2))],
        ],
    ]
    assert out.usage.prompt_tokens == 1 + 4 * 100  # the engine's count, images included


def test_openai_image_by_url_when_fetching_is_allowed(url, images_url):
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    parts = [{"type": "image_url", "image_url": {"url": images_url + "/red.png"}}]
    out = client.chat.completions.create(
        model="seer", messages=[{"role": "user", "content": parts}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in out if c.choices)
    assert json.loads(text) == [["user", "", [seen(RED, "image/png", (8, 6))]]]


def test_responses_input_image(url):
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    item = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "what?"},
            {"type": "input_image", "image_url": uri(BLUE, "image/jpeg"), "detail": "low"},
        ],
    }
    out = client.responses.create(model="seer", input=[item], store=False)
    assert json.loads(out.output_text) == [
        ["user", "what?", [seen(BLUE, "image/jpeg", (5, 7), "low")]]
    ]
    assert out.usage.input_tokens == 101


def test_anthropic_base64_and_url_blocks(url, images_url):
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    content = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": b64(RED)},
        },
        {"type": "image", "source": {"type": "url", "url": images_url + "/blue.jpg"}},
        {"type": "text", "text": "compare"},
    ]
    out = client.messages.create(
        model="seer", max_tokens=5, messages=[{"role": "user", "content": content}]
    )
    assert json.loads(out.content[0].text) == [
        ["user", "compare", [seen(RED, "image/png", (8, 6)), seen(BLUE, "image/jpeg", (5, 7))]]
    ]
    assert out.usage.input_tokens == 201


def test_ollama_chat_and_generate_images(url, tmp_path):
    path = tmp_path / "green.webp"
    path.write_bytes(GREEN)
    client = ollama.Client(host=url)
    out = client.chat(
        model="seer",
        messages=[{"role": "user", "content": "hi", "images": [RED, str(path)]}],
    )
    assert json.loads(out.message.content) == [
        ["user", "hi", [seen(RED, "image/png", (8, 6)), seen(GREEN, "image/webp", (4, 4))]]
    ]
    gen = client.generate(model="seer", prompt="describe", images=[BLUE], stream=False)
    assert json.loads(gen.response) == [["user", "describe", [seen(BLUE, "image/jpeg", (5, 7))]]]


# -- bad images: the dialect's 400, before any work -----------------------------------------


def _openai(data_url: str) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": data_url}}]
    return {"model": "seer", "messages": [{"role": "user", "content": parts}]}


def _anthropic(data: str, media: str = "image/png") -> dict:
    block = {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"model": "seer", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}


def _ollama(data: str) -> dict:
    return {
        "model": "seer",
        "stream": False,
        "messages": [{"role": "user", "content": "x", "images": [data]}],
    }


BMP = picture("red", (4, 4), "BMP")
SMALL_NOISE = _noise(20)
CUT = SMALL_NOISE[: len(SMALL_NOISE) // 2]  # half a PNG: the header reads, the decode fails

BAD = [
    # (what, openai body, anthropic body, ollama body, words the message must hold)
    ("corrupt", _openai(uri(CUT)), _anthropic(b64(CUT)), _ollama(b64(CUT)), "corrupt"),
    (
        "not an image",
        _openai(uri(b"hello")),
        _anthropic(b64(b"hello")),
        _ollama(b64(b"hello")),
        "not an image",
    ),
    (
        "BMP",
        _openai(uri(BMP, "image/bmp")),
        _anthropic(b64(BMP)),
        _ollama(b64(BMP)),
        "PNG, JPEG, WebP",
    ),
    ("bytes", _openai(uri(NOISE)), _anthropic(b64(NOISE)), _ollama(b64(NOISE)), "--max-image-mb"),
    ("pixels", _openai(uri(WIDE)), _anthropic(b64(WIDE)), _ollama(b64(WIDE)), "--max-image-pixels"),
    ("base64", _openai("data:image/png;base64,***"), _anthropic("***"), _ollama("***"), "base64"),
]


@pytest.mark.parametrize("what,oa,an,ol,words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_image_is_each_dialects_400(url, what, oa, an, ol, words):
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/chat/completions", json=oa)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert words in err["message"] and err["type"] == "invalid_request_error"
        assert err["param"] == "messages.0.content.0.image_url.url"
        r = http.post("/v1/messages", json=an)
        assert r.status_code == 400, r.text
        assert r.json()["type"] == "error" and words in r.json()["error"]["message"]
        r = http.post("/api/chat", json=ol)
        assert r.status_code == 400, r.text
        assert words in r.json()["error"]


def test_too_many_images_and_misplaced_ones(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        five = [{"type": "image_url", "image_url": {"url": uri(RED)}}] * 5
        r = http.post(
            "/v1/chat/completions",
            json={"model": "seer", "messages": [{"role": "user", "content": five}]},
        )
        assert r.status_code == 400 and "--max-images" in r.json()["error"]["message"]
        r = http.post(
            "/api/generate", json={"model": "seer", "prompt": "x", "images": [b64(RED)] * 5}
        )
        assert r.status_code == 400 and "--max-images" in r.json()["error"]
        sys_image = {
            "role": "system",
            "content": [{"type": "image_url", "image_url": {"url": uri(RED)}}],
        }
        r = http.post("/v1/chat/completions", json={"model": "seer", "messages": [sys_image]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages.0.content.0"
        r = http.post("/v1/messages", json=_anthropic(b64(RED), "image/bmp"))
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith("messages.0.content.0.source.media_type")
        item = {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}
        r = http.post("/v1/responses", json={"model": "seer", "input": [item], "store": False})
        assert r.status_code == 400 and "file_id" in r.json()["error"]["message"]
        raw = {"model": "seer", "prompt": "x", "raw": True, "images": [b64(RED)], "stream": False}
        r = http.post("/api/generate", json=raw)
        assert r.status_code == 400 and "chat template" in r.json()["error"]


def test_urls_need_the_operators_leave(closed_url, images_url):
    with httpx.Client(base_url=closed_url, timeout=30) as http:
        r = http.post("/v1/chat/completions", json=_openai(images_url + "/red.png"))
        assert r.status_code == 400 and "--image-fetch" in r.json()["error"]["message"]
        block = {"type": "image", "source": {"type": "url", "url": images_url + "/red.png"}}
        body = {
            "model": "seer",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [block]}],
        }
        r = http.post("/v1/messages", json=body)
        assert r.status_code == 400 and "--image-fetch" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "path,words",
    [
        ("/missing.png", "HTTP 404"),
        ("/noise.png", "--max-image-mb"),  # declared too large: refused before its body
        ("/unsized.png", "--max-image-mb"),  # no length declared: cut as it arrives
        ("/hang.png", "within 1 seconds"),
    ],
)
def test_a_bad_url_is_a_400_never_a_hang(url, images_url, path, words):
    with httpx.Client(base_url=url, timeout=30) as http:
        began = time.monotonic()
        r = http.post("/v1/chat/completions", json=_openai(images_url + path))
        assert r.status_code == 400 and words in r.json()["error"]["message"], r.text
        assert time.monotonic() - began < 10  # the limit is 1 s; far below the client's 30


def test_an_unreachable_url_is_a_400(url):
    from tests.conftest import free_port

    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/chat/completions", json=_openai(f"http://127.0.0.1:{free_port()}/x.png"))
        assert r.status_code == 400 and "could not be fetched" in r.json()["error"]["message"]
        r = http.post("/v1/chat/completions", json=_openai("ftp://example.com/x.png"))
        assert r.status_code == 400 and "data URI" in r.json()["error"]["message"]


# -- a text-only model: refused naming it and what it does ---------------------------------


def test_images_to_the_text_only_bundled_model_are_refused(server):
    name = "SmolLM2-135M-Instruct"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/v1/chat/completions", json={**_openai(uri(RED)), "model": name})
        assert r.status_code == 400
        err = r.json()["error"]
        assert name in err["message"] and "completion" in err["message"]
        assert err["code"] == "vision_unsupported"
        r = http.post("/v1/messages", json={**_anthropic(b64(RED)), "model": name})
        assert r.status_code == 400 and name in r.json()["error"]["message"]
        r = http.post("/api/chat", json={**_ollama(b64(RED)), "model": name})
        assert r.status_code == 400 and name in r.json()["error"]
        body = {"model": name, "prompt": "x", "images": [b64(RED)], "stream": False}
        r = http.post("/api/generate", json=body)
        assert r.status_code == 400 and name in r.json()["error"]
        item = {"role": "user", "content": [{"type": "input_image", "image_url": uri(RED)}]}
        r = http.post("/v1/responses", json={"model": name, "input": [item], "store": False})
        assert r.status_code == 400 and name in r.json()["error"]["message"]
    # openai's client sees the code; llmkit's rebuilds the error with its fields.
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(model=name, messages=_openai(uri(RED))["messages"])
    assert caught.value.code == "vision_unsupported"
    with Client(server.url, dialect="openai") as client, pytest.raises(VisionUnsupportedError) as e:
        list(client.stream_chat(name, [Message("user", "hi", images=(image(RED),))]))
    assert e.value.model == name and "completion" in e.value.supports
