"""Table tests of ``llmkit.api.openai.convert``'s responses: scripted core chunks
in, the exact ``data:`` payloads and objects out. No server, no engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeVar

import pytest

from llmkit.api.models_view import ModelView
from llmkit.api.openai import convert, replies
from llmkit.api.openai import schemas as s
from llmkit.core.types import Chunk, EngineInfo, Usage

T = TypeVar("T")
FP = s.SYSTEM_FINGERPRINT
HEAD = replies.Head("chatcmpl-1", 1700000000, "m")
CHAT = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m"}
TEXT = {"id": "chatcmpl-1", "object": "text_completion", "created": 1700000000, "model": "m"}


def run(events: AsyncIterator[T]) -> list[T]:
    async def drain() -> list[T]:
        return [e async for e in events]

    return asyncio.run(drain())


async def scripted(chunks: Iterable[tuple[int, Chunk]]) -> AsyncIterator[tuple[int, Chunk]]:
    for c in chunks:
        yield c


def stop(usage: Usage | None = None, reason: str = "stop", text: str = "") -> Chunk:
    return Chunk(text=text, finish_reason=reason, usage=usage)  # type: ignore[arg-type]


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def delta(i: int, d: dict[str, str], reason: str | None = None, **more: Any) -> dict[str, Any]:
    choice = {"index": i, "delta": d, "finish_reason": reason, "logprobs": None}
    return {**CHAT, "choices": [choice], **more, "system_fingerprint": FP}


def piece(i: int, text: str, reason: str | None = None, **more: Any) -> dict[str, Any]:
    choice = {"index": i, "text": text, "finish_reason": reason, "logprobs": None}
    return {**TEXT, "choices": [choice], **more, "system_fingerprint": FP}


def wire(*events: dict[str, Any]) -> list[str]:
    return [json.dumps(e, ensure_ascii=False) for e in events]


OPEN = {"role": "assistant", "content": ""}

CHAT_STREAMS = [
    pytest.param(
        1,
        False,
        [(0, Chunk("Hé", token_ids=(1,))), (0, Chunk()), (0, stop(Usage(5, 1)))],
        wire(delta(0, OPEN), delta(0, {"content": "Hé"}), delta(0, {}, "stop")),
        id="one choice; an empty chunk sends nothing; no usage key",
    ),
    pytest.param(
        2,
        True,
        [
            (0, Chunk("a")),
            (1, Chunk("b")),
            (1, stop(Usage(5, 1, 2), "length", text="c")),
            (0, stop(Usage(5, 3, 2))),
        ],
        wire(
            delta(0, OPEN, usage=None),
            delta(1, OPEN, usage=None),
            delta(0, {"content": "a"}, usage=None),
            delta(1, {"content": "b"}, usage=None),
            delta(1, {"content": "c"}, "length", usage=None),
            delta(0, {}, "stop", usage=None),
            {**CHAT, "choices": [], "usage": usage(5, 4, cached=2), "system_fingerprint": FP},
        ),
        id="n=2 interleaved, with usage: the shared prompt counted once",
    ),
]


@pytest.mark.parametrize(("n", "include_usage", "chunks", "expected"), CHAT_STREAMS)
def test_chat_stream_events(n, include_usage, chunks, expected):
    events = run(replies.to_chat_chunks(HEAD, scripted(chunks), n=n, include_usage=include_usage))
    assert [replies.to_sse_data(e, include_usage=include_usage) for e in events] == expected


COMPLETION_STREAMS = [
    pytest.param(
        ["Say "],
        False,
        [(0, Chunk("hi")), (0, Chunk(" there")), (0, stop(Usage(2, 2)))],
        wire(piece(0, "Say hi"), piece(0, " there"), piece(0, "", "stop")),
        id="echo goes before the first piece only",
    ),
    pytest.param(
        ["A", "B"],
        True,
        [(1, stop(Usage(1, 0), "length")), (0, Chunk("x")), (0, stop(Usage(1, 1)))],
        wire(
            piece(1, "B", "length", usage=None),
            piece(0, "Ax", usage=None),
            piece(0, "", "stop", usage=None),
            {**TEXT, "choices": [], "usage": usage(2, 1), "system_fingerprint": FP},
        ),
        id="a choice whose first chunk is its last still echoes; every prompt is counted",
    ),
    pytest.param(
        ["", ""],
        False,
        [(0, Chunk()), (1, Chunk("y")), (0, stop()), (1, stop())],
        wire(piece(1, "y"), piece(0, "", "stop"), piece(1, "", "stop")),
        id="no echo",
    ),
]


@pytest.mark.parametrize(("echo", "include_usage", "chunks", "expected"), COMPLETION_STREAMS)
def test_completion_stream_events(echo, include_usage, chunks, expected):
    head = replies.Head("chatcmpl-1", 1700000000, "m")
    stream = replies.to_completion_chunks(
        head, scripted(chunks), echo=echo, include_usage=include_usage
    )
    assert [replies.to_sse_data(e, include_usage=include_usage) for e in run(stream)] == expected


def test_whole_chat_completion_counts_the_prompt_once():
    results = [("Hello", stop(Usage(7, 2, 3))), ("Hi", stop(Usage(7, 1, 3), "length"))]
    got = replies.to_chat_completion(HEAD, results).model_dump()
    message = {"role": "assistant", "content": "Hello", "refusal": None}
    assert got == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None},
            {
                "index": 1,
                "message": {**message, "content": "Hi"},
                "finish_reason": "length",
                "logprobs": None,
            },
        ],
        "usage": usage(7, 3, cached=3),
        "system_fingerprint": FP,
    }


def test_whole_completion_puts_the_echo_first():
    results = [("!", stop(Usage(1, 1))), ("?", stop(Usage(2, 1), "length"))]
    got = replies.to_completion(HEAD, results, ["Hi", ""]).model_dump()
    assert [(c["text"], c["finish_reason"]) for c in got["choices"]] == [
        ("Hi!", "stop"),
        ("?", "length"),
    ]
    assert got["usage"] == usage(3, 2)


@pytest.mark.parametrize(
    ("body", "echo"),
    [
        ({"prompt": "Say", "echo": True}, ["Say"]),
        ({"prompt": ["A", "B"], "echo": True, "n": 2}, ["A", "A", "B", "B"]),
        ({"prompt": [1, 2], "echo": True}, [""]),  # token ids are not echoed
        ({"prompt": "Say"}, [""]),
    ],
)
def test_completion_echo(body, echo):
    req = s.CompletionRequest(model="m", **body)
    assert convert.completion_echo(req, convert.completion_prompts(req)) == echo


def test_model_list_names_every_alias():
    info = EngineInfo(engine="llama.cpp", model="/x.gguf", context_length=8192)
    view = ModelView(("m", "alias"), info, created=1700000000, loaded=False, expires_at=None)
    assert replies.to_model_list([view]).model_dump() == {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": 1700000000,
                "owned_by": "llmkit",
                "max_model_len": 8192,
                "parent": None,  # vLLM's: the base model of an adapter, None for a base
            }
            for name in ("m", "alias")
        ],
    }
