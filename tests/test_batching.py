"""Continuous batching in the llama.cpp engine: batched answers equal solo
answers, requests join a running batch, each keeps its own settings, and a
conversation's next turn reuses the cached prefix."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from tests.conftest import long_chat, start_server, together

MODEL = "SmolLM2-135M-Instruct"
TOPICS = ["a cat", "the sea", "a robot", "winter", "bread", "a river", "chess", "owls"]


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("batch"), "--parallel", "8")
    yield s
    s.stop()


def _chat(client, content: str, **kw) -> str:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=40, **kw
    )
    return r.choices[0].message.content


def test_greedy_batched_with_seven_others_equals_alone(batch_server):
    client = batch_server.client()
    alone = [_chat(client, f"Describe {t}.", temperature=0) for t in TOPICS]
    batched = together(lambda t: _chat(client, f"Describe {t}.", temperature=0), TOPICS)
    assert batched == alone


def test_each_sequence_keeps_its_own_seed_and_stop(batch_server):
    client = batch_server.client()
    cases = [
        dict(content="Invent a word.", temperature=1.0, seed=s, stop=stop)
        for s, stop in [(1, None), (2, ["e"]), (3, [" "]), (4, ["a", "o"])] * 2
    ]

    def ask(case: dict) -> str:
        return _chat(client, **case)

    alone = [ask(c) for c in cases]
    assert together(ask, cases) == alone
    for c, text in zip(cases, alone, strict=True):
        for s in c["stop"] or []:
            assert s not in text


def _running(server) -> int:
    return httpx.get(server.url + "/health").json()["models"][0]["running"]


def test_new_request_joins_while_another_runs(batch_server):
    long = long_chat(3000)
    with httpx.stream("POST", batch_server.v1 + "/chat/completions", json=long, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        assert _chat(batch_server.client(), "Say hi.", temperature=0)
        # the short one finished while the long one is still going: it did not wait
        assert _running(batch_server) == 1
        for _ in range(5):
            assert next(lines) is not None  # and the long one keeps streaming
    deadline = time.monotonic() + 10
    while _running(batch_server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(batch_server) == 0  # leaving freed its slot


def test_next_turn_reuses_the_cached_prefix(batch_server):
    client = batch_server.client()
    messages = [{"role": "system", "content": "You are a storyteller. " * 20}]
    cached = []
    for turn in range(3):
        messages.append({"role": "user", "content": f"Continue the story, part {turn + 1}."})
        r = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=16, temperature=0
        )
        cached.append((r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens))
        messages.append({"role": "assistant", "content": r.choices[0].message.content})
    # turn 1 reads the long system prompt; later turns find the whole earlier
    # conversation (all but its last few template tokens) already in the cache
    for (prev_prompt, _), (_, hit) in itertools.pairwise(cached):
        assert hit >= prev_prompt - 4
