"""Images end to end on a real (made) vision model: the tiny random SmolVLM of
``tests/tiny_vlm.py`` served with its projector, driven by the ``openai``,
``anthropic`` and ``ollama`` clients and by ``Chat``.

The model is random, so nothing is asserted about what it says: its first
token's log-probabilities tell a red image from a blue one and the same image
from itself; every dialect counts the same prompt tokens for the same turn, an
image costs what ``/tokenize`` says it costs (twice for two), and a second
question about the same image finds the image's cells in the cache."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import anthropic
import httpx
import ollama
import pytest

from llmkit.memory.chat import Chat
from tests.conftest import Server, start_server
from tests.tiny_vlm import BLUE, RED, TinyVlm, png


@pytest.fixture(scope="module")
def vsrv(vlm: TinyVlm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(
        tmp_path_factory.mktemp("images-vision"),
        "--model",
        str(vlm.lm),
        "--mmproj",
        str(vlm.mmproj),
        "--served-model-name",
        "vlm",
        "--max-model-len",
        "512",
        "--parallel",
        "2",
    )
    yield s
    s.stop()


def uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def turn(*images: bytes, text: str = "What colour?") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": uri(i)}} for i in images]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def first_logprobs(client, messages) -> dict[str, float]:  # type: ignore[no-untyped-def]
    out = client.chat.completions.create(
        model="vlm", messages=messages, max_tokens=1, temperature=0, logprobs=True, top_logprobs=5
    )
    return {t.token: t.logprob for t in out.choices[0].logprobs.content[0].top_logprobs}


def prompt_tokens(client, messages) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    u = client.chat.completions.create(
        model="vlm", messages=messages, max_tokens=1, temperature=0
    ).usage
    return u.prompt_tokens, u.prompt_tokens_details.cached_tokens


def test_images_reach_the_model_and_are_counted_in_every_dialect(vsrv):
    client = vsrv.client()
    red, blue = png(RED), png(BLUE)
    assert first_logprobs(client, turn(red)) == pytest.approx(first_logprobs(client, turn(red)))
    assert first_logprobs(client, turn(red)) != first_logprobs(client, turn(blue))
    # What an image costs, as the server counts it, in usage and in /tokenize alike.
    text_only = prompt_tokens(client, [{"role": "user", "content": "What colour?"}])[0]
    one, two = prompt_tokens(client, turn(red))[0], prompt_tokens(client, turn(red, blue))[0]
    cost = one - text_only
    assert cost > 4 and two - one == cost
    counted = httpx.post(vsrv.url + "/tokenize", json={"model": "vlm", "messages": turn(red, blue)})
    assert counted.json()["count"] == two
    # The same turn in the other dialects: the same count.
    block = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(red).decode()}
    content = [{"type": "image", "source": block}, {"type": "text", "text": "What colour?"}]
    an = anthropic.Anthropic(base_url=vsrv.url, api_key="x", max_retries=0).messages.create(
        model="vlm", max_tokens=1, messages=[{"role": "user", "content": content}]
    )
    assert an.usage.input_tokens == one
    ol = ollama.Client(host=vsrv.url).chat(
        model="vlm",
        messages=[{"role": "user", "content": "What colour?", "images": [red]}],
        options={"num_predict": 1},
    )
    assert ol.prompt_eval_count == one


def test_a_second_question_about_the_image_finds_it_cached(vsrv, tmp_path):
    client = vsrv.client()
    green = png((30, 200, 30))
    first = turn(green, text="What colour?")
    total, _ = prompt_tokens(client, first)
    follow = [
        *first,
        {"role": "assistant", "content": "Green."},
        {"role": "user", "content": "Sure?"},
    ]
    again, cached = prompt_tokens(client, follow)
    assert again > total and cached >= total - 2  # the image's cells were not encoded again
    # Chat keeps the image and sends it again with the next turn.
    chat = Chat(
        vsrv.url, "vlm", session="v", store=f"sqlite:///{tmp_path / 'c.sqlite'}", max_tokens=2
    )
    chat.send("What colour?", images=[green])
    chat.send("Sure?")
    # (llmkit's client reads no cached count: the image is seen to go again by its tokens)
    assert chat.last_sent[0].images[0].data == green and chat.last_reply.usage.prompt_tokens > total
    chat.close()
