"""Table tests of ``llmkit.api.ollama.convert``'s responses: scripted chunks with
the times they arrived in, the exact NDJSON lines and objects out. No server,
no engine, no clock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from llmkit.api.models_view import ModelView
from llmkit.api.ollama import convert, listings, replies
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Message, Usage
from llmkit.errors import InvalidRequestError

T = TypeVar("T")
AT = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
STAMP = "2025-01-02T03:04:05.678901Z"
# start 1000 ns; the model took 100 to load; the prompt was read by 1500.
TIMING = replies.Timing(start=1_000, first=1_500, load=100)
SAID = {"role": "assistant"}


def stamped(*chunks: tuple[Chunk, int]) -> AsyncIterator[replies.Stamped]:
    async def gen() -> AsyncIterator[replies.Stamped]:
        for chunk, ns in chunks:
            yield replies.Stamped(chunk, ns, AT)

    return gen()


def run(work: Awaitable[T]) -> T:
    return asyncio.run(work)  # type: ignore[arg-type]


def lines(stream: AsyncIterator[Any]) -> list[str]:
    async def drain() -> list[str]:
        return [replies.to_ndjson_line(x) async for x in stream]

    return run(drain())


def done(reason: str, prompt: int, completion: int, end: int, **rest: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "created_at": STAMP,
        "done": True,
        "done_reason": reason,
        "total_duration": end - 1_000,
        "load_duration": 100,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": 400,  # first - start - load
        "eval_count": completion,
        "eval_duration": end - 1_500,
        **rest,
    }


def chat_line(text: str) -> dict[str, Any]:
    return {"model": "m", "created_at": STAMP, "message": {**SAID, "content": text}, "done": False}


def generate_line(text: str) -> dict[str, Any]:
    return {"model": "m", "created_at": STAMP, "response": text, "done": False}


def ndjson(*objs: dict[str, Any]) -> list[str]:
    return [json.dumps(o, ensure_ascii=False) + "\n" for o in objs]


SCRIPT = [
    (Chunk("Hé", token_ids=(1, 2)), 1_500),
    (Chunk(), 1_600),  # nothing to say: no line
    (Chunk("日本", token_ids=(3,)), 1_700),
    (Chunk("", token_ids=(4,), finish_reason="length", usage=Usage(5, 4)), 2_000),
]

STREAMS = [
    pytest.param(
        lambda: replies.to_chat_lines("m", TIMING, stamped(*SCRIPT)),
        ndjson(
            chat_line("Hé"),
            chat_line("日本"),
            done("length", 5, 4, 2_000, message={**SAID, "content": ""}),
        ),
        id="chat",
    ),
    pytest.param(
        lambda: replies.to_generate_lines("m", TIMING, stamped(*SCRIPT), [7, 8]),
        ndjson(
            generate_line("Hé"),
            generate_line("日本"),
            done("length", 5, 4, 2_000, response="", context=[7, 8, 1, 2, 3, 4]),
        ),
        id="generate: context is the prompt then the reply",
    ),
    pytest.param(
        lambda: replies.to_generate_lines("m", TIMING, stamped(*SCRIPT[2:]), None),
        ndjson(
            generate_line("日本"),
            done("length", 5, 4, 2_000, response=""),
        ),
        id="generate: no context when the prompt's tokens are unknown",
    ),
]


@pytest.mark.parametrize(("make", "expected"), STREAMS)
def test_stream_lines(make, expected):
    assert lines(make()) == expected


def test_whole_answers_join_the_text():
    chat = run(replies.to_chat_response("m", TIMING, stamped(*SCRIPT)))
    assert chat.model_dump() == done("length", 5, 4, 2_000, message={**SAID, "content": "Hé日本"})
    gen = run(replies.to_generate_response("m", TIMING, stamped(*SCRIPT), []))
    assert gen.model_dump() == done("length", 5, 4, 2_000, response="Hé日本", context=[1, 2, 3, 4])


def test_a_stream_without_a_final_chunk_reports_no_counts():
    cut = run(replies.to_chat_response("m", TIMING, stamped((Chunk("x", token_ids=(1,)), 1_900))))
    assert cut.model_dump() == done("stop", 0, 0, 1_900, message={**SAID, "content": "x"})


def test_a_loaded_model_took_no_load_time():
    timing = replies.Timing(start=0, first=50)
    chunk = Chunk(finish_reason="stop", usage=Usage(1, 1))
    d = run(replies.to_chat_response("m", timing, stamped((chunk, 80)))).model_dump()
    assert (d["load_duration"], d["prompt_eval_duration"], d["eval_duration"]) == (0, 50, 30)


@pytest.mark.parametrize(
    ("chat", "unload", "expected"),
    [
        (True, False, {"done_reason": "load", "message": {**SAID, "content": ""}}),
        (False, True, {"done_reason": "unload", "response": ""}),
    ],
)
def test_load_answers(chat, unload, expected):
    got = replies.to_load_answer("m", chat=chat, unload=unload, now=AT)
    assert got.model_dump() == {"model": "m", "created_at": STAMP, "done": True, **expected}


PROMPT = GenerateRequest(messages=(Message("user", "hi"),))


@pytest.mark.parametrize(
    ("context", "encoded", "prompt", "ids"),
    [
        (None, [5, 6], (5, 6), [5, 6]),
        ([1, 2], [5, 6], (1, 2, 5, 6), [1, 2, 5, 6]),
        (None, None, None, None),  # a remote engine: the messages go as they are
    ],
)
def test_context_goes_before_the_prompt(context, encoded, prompt, ids):
    req, got = convert.with_context(PROMPT, context, encoded)
    assert got == ids
    assert req == (PROMPT if prompt is None else GenerateRequest(prompt=prompt))


def test_context_needs_an_engine_that_tokenizes():
    with pytest.raises(InvalidRequestError, match="context"):
        convert.with_context(PROMPT, [1], None)


INFO = EngineInfo(
    engine="llama.cpp",
    model="/models/x.gguf",
    context_length=8192,
    format="gguf",
    family="llama",
    parameter_count=135_000_000,
    parameter_size="135M",
    quantization="Q4_1",
    size_bytes=1000,
    license="mit",
    chat_template="{{ x }}",
    metadata={
        "llama.block_count": "30",
        "x.eps": "1e-05",
        "x.name": "s",
        "tokenizer.chat_template": "t",
    },
)
CREATED = int(datetime(2024, 5, 6, tzinfo=UTC).timestamp())
DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "135M",
    "quantization_level": "Q4_1",
}


def model(loaded: bool = True, expires_at: float | None = None) -> ModelView:
    return ModelView(("m", "alias"), INFO, CREATED, loaded, expires_at)


def test_tags_list_every_name():
    entries = listings.to_tags([model(loaded=False)]).model_dump()["models"]
    assert [e["name"] for e in entries] == ["m:latest", "alias:latest"]  # Ollama's tag
    digest = entries[0]["digest"]
    assert len(digest) == 64 and digest == listings.digest(model())
    assert entries[0] == {
        "name": "m:latest",
        "model": "m:latest",
        "modified_at": "2024-05-06T00:00:00.000000Z",
        "size": 1000,
        "digest": digest,
        "details": DETAILS,
        "capabilities": ["completion"],
    }


def test_unknown_family_is_null_families():
    bare = ModelView(("m",), EngineInfo(engine="e", model="x", context_length=1), 0, True, None)
    assert listings.to_tags([bare]).model_dump()["models"][0]["details"]["families"] is None


@pytest.mark.parametrize(
    ("expires_at", "shown"),
    [
        (CREATED + 300.0, "2024-05-06T00:05:00Z"),
        (None, "2124-12-09T03:04:05Z"),  # kept for good: 100 × 365 days on
    ],
)
def test_ps_lists_loaded_models_with_their_unload_time(expires_at, shown):
    got = listings.to_ps([model(expires_at=expires_at), model(loaded=False)], now=AT).model_dump()
    assert [m["name"] for m in got["models"]] == ["m:latest", "alias:latest"]
    assert got["models"][0] == {
        "name": "m:latest",
        "model": "m:latest",
        "size": 1000,
        "digest": listings.digest(model()),
        "details": DETAILS,
        "expires_at": shown,
        "size_vram": 0,
        "context_length": 8192,
        "engine": "llama.cpp",
        "served_as": "m",
        "slots": 0,
        "slots_in_use": 0,
        "queue": 0,
        "speculative": "",  # a model that does not speculate says nothing
    }


def test_ps_tells_slots_in_use_and_the_queue():
    info = dataclasses.replace(INFO, details={"parallel": 4})
    busy = ModelView(("m",), info, CREATED, True, None, running=3, queued=2)
    [got] = listings.to_ps([busy], now=AT).model_dump()["models"]
    assert (got["slots"], got["slots_in_use"], got["queue"]) == (4, 3, 2)


def test_show():
    assert listings.to_show(model()).model_dump() == {
        "license": "mit",
        "modelfile": (
            "# served by llmkit (llama.cpp)\nFROM /models/x.gguf\nPARAMETER num_ctx 8192\n"
        ),
        "parameters": "num_ctx 8192",
        "template": "{{ x }}",
        "system": None,
        "details": DETAILS,
        "model_info": {
            "llama.block_count": 30,
            "x.eps": 1e-05,
            "x.name": "s",
            "general.parameter_count": 135_000_000,
        },
        "capabilities": ["completion"],
        "modified_at": "2024-05-06T00:00:00.000000Z",
    }
