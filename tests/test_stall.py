"""No request can stall the server: a huge value of any request-size parameter,
in any dialect, gets a 4xx at once, and ``/health`` answers while it is refused.

One real ``llmkit serve`` with the bundled model; hypothesis draws how huge each
value is (from just over the limit to far over it), and every case says which
flag the refusal must name. The clock runs from the moment the request is sent
to the moment its answer arrives; a ``/health`` probe sent at the same moment
must answer within the same second, so the event loop was free throughout.

The engine's side of it (a prompt, sampler and grammar prepared off the event
loop, within a budget) is checked in-process at the end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmkit.engines.budget import within_budget
from llmkit.errors import InvalidRequestError

MODEL = "SmolLM2-135M-Instruct"
HI = [{"role": "user", "content": "hi"}]
SECOND = 1.0  # what the issue asks: the refusal within a second
FAR = 50_000  # the most elements a drawn list has (under a MB of JSON)


def fn(name: str, parameters: dict | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters or {}}}


def enum_schema(k: int) -> dict:
    return {"type": "object", "properties": {"a": {"enum": list(range(k))}}}


def deep_schema(k: int) -> dict:
    node: dict = {"type": "string"}
    for _ in range(k):
        node = {"type": "array", "items": node}
    return node


def wide_schema(k: int) -> dict:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(k)}}


def chat(**extra: Any) -> dict:
    return {"model": MODEL, "messages": HI, "max_tokens": 4, **extra}


def anthropic(**extra: Any) -> dict:
    return {"model": MODEL, "max_tokens": 4, "messages": HI, **extra}


def ollama_chat(**extra: Any) -> dict:
    return {"model": MODEL, "messages": HI, "stream": False, **extra}


def ollama_generate(**extra: Any) -> dict:
    return {"model": MODEL, "prompt": "hi", "stream": False, **extra}


def responses(**extra: Any) -> dict:
    return {"model": MODEL, "input": "hi", "store": False, "max_output_tokens": 4, **extra}


@dataclass(frozen=True)
class Case:
    """A parameter made huge: the path, its body for a size ``k``, the sizes
    drawn (``low``: just over the limit), and what the 400 must name."""

    path: str
    body: Callable[[int], dict]
    low: int
    high: int
    names: str  # the flag (or the fixed limit) the message names

    def __str__(self) -> str:  # the test id
        return self.path


N = 10**12
CASES = {
    # OpenAI chat completions
    "chat n": Case("/v1/chat/completions", lambda k: chat(n=k), 17, N, "--max-n"),
    "chat messages": Case(
        "/v1/chat/completions", lambda k: chat(messages=HI * k), 4097, 20_000, "--max-messages"
    ),
    "chat stop count": Case(
        "/v1/chat/completions", lambda k: chat(stop=["x"] * k), 33, FAR, "--max-stop"
    ),
    "chat stop length": Case(
        "/v1/chat/completions", lambda k: chat(stop="x" * k), 257, 10**6, "--max-stop-length"
    ),
    "chat tools": Case(
        "/v1/chat/completions",
        lambda k: chat(tools=[fn(f"f{i}") for i in range(k)]),
        129,
        10_000,
        "--max-tools",
    ),
    "chat functions": Case(
        "/v1/chat/completions",
        lambda k: chat(functions=[{"name": f"f{i}"} for i in range(k)]),
        129,
        10_000,
        "--max-tools",
    ),
    "chat tool enum": Case(
        "/v1/chat/completions",
        lambda k: chat(tools=[fn("f", enum_schema(k))]),
        1001,
        FAR,
        "--max-schema-enum",
    ),
    "chat tool depth": Case(
        "/v1/chat/completions",
        lambda k: chat(tools=[fn("f", {"type": "object", "properties": {"a": deep_schema(k)}})]),
        64,
        400,
        "--max-schema-depth",
    ),
    "chat schema enum": Case(
        "/v1/chat/completions",
        lambda k: chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": enum_schema(k)},
            }
        ),
        1001,
        FAR,
        "--max-schema-enum",
    ),
    "chat schema anyOf": Case(
        "/v1/chat/completions",
        lambda k: chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"anyOf": [{"const": i} for i in range(k)]}},
            }
        ),
        501,  # each branch offers two: itself and its const
        9_000,  # past --max-schema-size's 10,000 objects, that is the limit it meets
        "--max-schema-enum",
    ),
    "chat schema size": Case(
        "/v1/chat/completions",
        lambda k: chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": wide_schema(k)},
            }
        ),
        10_000,
        20_000,
        "--max-schema-size",
    ),
    "chat logit_bias": Case(
        "/v1/chat/completions",
        lambda k: chat(logit_bias={str(i): 1 for i in range(k)}),
        1025,
        FAR,
        "1024",
    ),
    # OpenAI completions
    "completions n": Case(
        "/v1/completions", lambda k: {"model": MODEL, "prompt": "hi", "n": k}, 17, N, "--max-n"
    ),
    "completions best_of": Case(
        "/v1/completions",
        lambda k: {"model": MODEL, "prompt": "hi", "best_of": k},
        17,
        N,
        "--max-n",
    ),
    "completions prompts": Case(
        "/v1/completions",
        lambda k: {"model": MODEL, "prompt": ["hi"] * k},
        2049,
        FAR,
        "--max-inputs",
    ),
    "completions stop": Case(
        "/v1/completions",
        lambda k: {"model": MODEL, "prompt": "hi", "stop": ["x"] * k},
        33,
        FAR,
        "--max-stop",
    ),
    # OpenAI embeddings
    "embeddings input": Case(
        "/v1/embeddings", lambda k: {"model": MODEL, "input": ["hi"] * k}, 2049, FAR, "--max-inputs"
    ),
    "embeddings token lists": Case(
        "/v1/embeddings", lambda k: {"model": MODEL, "input": [[1]] * k}, 2049, FAR, "--max-inputs"
    ),
    # Responses
    "responses input": Case(
        "/v1/responses",
        lambda k: responses(input=[{"role": "user", "content": "hi"}] * k),
        4097,
        20_000,
        "--max-messages",
    ),
    "responses tools": Case(
        "/v1/responses",
        lambda k: responses(tools=[{"type": "function", "name": f"f{i}"} for i in range(k)]),
        129,
        10_000,
        "--max-tools",
    ),
    "responses schema": Case(
        "/v1/responses",
        lambda k: responses(
            text={"format": {"type": "json_schema", "name": "x", "schema": enum_schema(k)}}
        ),
        1001,
        FAR,
        "--max-schema-enum",
    ),
    # Anthropic messages
    "anthropic messages": Case(
        "/v1/messages", lambda k: anthropic(messages=HI * k), 4097, 20_000, "--max-messages"
    ),
    "anthropic stop_sequences": Case(
        "/v1/messages", lambda k: anthropic(stop_sequences=["x"] * k), 33, FAR, "--max-stop"
    ),
    "anthropic tools": Case(
        "/v1/messages",
        lambda k: anthropic(tools=[{"name": f"f{i}", "input_schema": {}} for i in range(k)]),
        129,
        10_000,
        "--max-tools",
    ),
    "anthropic tool schema": Case(
        "/v1/messages",
        lambda k: anthropic(tools=[{"name": "f", "input_schema": deep_schema(k)}]),
        64,
        400,
        "--max-schema-depth",
    ),
    "anthropic count_tokens": Case(
        "/v1/messages/count_tokens",
        lambda k: {"model": MODEL, "messages": HI * k},
        4097,
        20_000,
        "--max-messages",
    ),
    # vLLM's /tokenize
    "tokenize messages": Case(
        "/tokenize", lambda k: {"model": MODEL, "messages": HI * k}, 4097, 20_000, "--max-messages"
    ),
    # Ollama
    "ollama chat messages": Case(
        "/api/chat", lambda k: ollama_chat(messages=HI * k), 4097, 20_000, "--max-messages"
    ),
    "ollama chat stop": Case(
        "/api/chat", lambda k: ollama_chat(options={"stop": ["x"] * k}), 33, FAR, "--max-stop"
    ),
    "ollama chat tools": Case(
        "/api/chat",
        lambda k: ollama_chat(tools=[fn(f"f{i}") for i in range(k)]),
        129,
        10_000,
        "--max-tools",
    ),
    "ollama chat format": Case(
        "/api/chat", lambda k: ollama_chat(format=deep_schema(k)), 64, 400, "--max-schema-depth"
    ),
    "ollama generate stop": Case(
        "/api/generate",
        lambda k: ollama_generate(options={"stop": "x" * k}),
        257,
        10**6,
        "--max-stop-length",
    ),
    "ollama generate format": Case(
        "/api/generate",
        lambda k: ollama_generate(format=enum_schema(k)),
        1001,
        FAR,
        "--max-schema-enum",
    ),
    "ollama generate repeat_last_n": Case(
        "/api/generate",
        lambda k: ollama_generate(options={"repeat_last_n": k}),
        (1 << 20) + 1,
        N,
        "1048576",
    ),
    "ollama generate template": Case(
        "/api/generate",
        lambda k: ollama_generate(template="{{ .Prompt }}" * k),
        257,
        FAR,
        "256",
    ),
    "ollama embed": Case(
        "/api/embed", lambda k: {"model": MODEL, "input": ["hi"] * k}, 2049, FAR, "--max-inputs"
    ),
}


def message_of(path: str, body: dict) -> str:
    """The error's message, checked to be in the path's dialect."""
    if path.startswith("/api/"):
        assert isinstance(body["error"], str)
        return body["error"]
    if path.startswith("/v1/messages"):
        assert body["type"] == "error"
        return body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]["message"]


def refused_at_once(url: str, case: Case, k: int) -> None:
    body = case.body(k)
    with httpx.Client(base_url=url, timeout=60) as big, httpx.Client(base_url=url) as probe:
        with ThreadPoolExecutor(2) as pool:
            gate = threading.Barrier(2)

            def timed(send: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
                gate.wait()
                start = time.perf_counter()
                return send(), time.perf_counter() - start

            asked = pool.submit(timed, lambda: big.post(case.path, json=body))
            health = pool.submit(timed, lambda: probe.get("/health", timeout=30))
            (answer, took), (alive, health_took) = asked.result(), health.result()
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert case.names in message_of(case.path, answer.json()), answer.text[:300]
    assert took < SECOND, f"{case.path} with k={k} took {took:.2f} s"
    assert alive.status_code == 200 and health_took < SECOND, health_took


@pytest.mark.parametrize("name", list(CASES))
def test_a_huge_value_is_refused_within_a_second_while_health_answers(server, name):
    case = CASES[name]

    @settings(
        max_examples=1,  # one drawn size a case, with the two explicit ones
        deadline=None,
        derandomize=True,  # the same sizes every run
        suppress_health_check=list(HealthCheck),
    )
    @given(k=st.integers(case.low, case.high))
    @example(k=case.low)
    @example(k=min(case.high, 10**9))  # {"n": 1000000000} among them
    def run(k: int) -> None:
        refused_at_once(server.url, case, k)

    run()


def test_n_of_a_billion_leaves_the_server_serving(server):
    # The issue's own example: the route used to build a billion requests first.
    for path in ("/v1/chat/completions", "/v1/completions"):
        billion = 1_000_000_000
        body = chat(n=billion) if "chat" in path else {"model": MODEL, "prompt": "hi", "n": billion}
        refused_at_once(server.url, Case(path, lambda _k, b=body: b, 0, 0, "--max-n"), 0)
    r = httpx.post(server.url + "/v1/chat/completions", json=chat(max_tokens=1), timeout=120)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 1


def test_work_over_its_budget_is_a_400_and_its_result_is_freed():
    released = threading.Event()
    freed: list[str] = []

    def slow() -> str:
        released.wait(10)
        return "sampler"

    async def go() -> None:
        start = time.perf_counter()
        with pytest.raises(InvalidRequestError) as e:
            await within_budget(slow, budget=0.2, discard=freed.append)
        assert time.perf_counter() - start < 2 and "took over 0.2 s" in e.value.message
        released.set()
        for _ in range(200):  # the thread finishes on its own; its result is freed then
            if freed:
                break
            await asyncio.sleep(0.01)
        assert freed == ["sampler"]
        assert await within_budget(lambda: 42, budget=5) == 42

    asyncio.run(go())
