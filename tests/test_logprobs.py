"""Log-probabilities end to end: the shared server (the bundled model on llama.cpp,
four sequences a batch) asked through the ``openai`` and ``ollama`` clients.

Greedy replies make the checks exact: the token chosen at each step is the
likeliest one (the values are the model's raw distribution, ``engines.logprobs``),
so it heads its own alternatives; the tokens spell the reply; streaming, batching
and ``n`` change nothing but how the same values travel."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionTokenLogprob

MODEL = "SmolLM2-135M-Instruct"
MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in a sentence."}]
EPS = 1e-6
# Batched and alone, llama.cpp adds the same numbers in another order: the values
# agree to float32 rounding, far inside this.
BATCH_TOLERANCE = 1e-3


def chat(client: openai.OpenAI, **kw: object):
    args = {"model": MODEL, "messages": MESSAGES, "max_tokens": 24, "temperature": 0}
    return client.chat.completions.create(**{**args, "logprobs": True, "top_logprobs": 5, **kw})


def check_greedy(entries, top: int) -> None:
    """Each chosen token is the likeliest at its step; values are probabilities."""
    assert entries
    for e in entries:
        assert e.logprob <= 0
        assert 1 <= len(e.top_logprobs) <= top
        values = [t.logprob for t in e.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert all(e.logprob >= v - EPS for v in values)
        assert e.top_logprobs[0].token == e.token
        assert math.fsum(math.exp(v) for v in values) <= 1 + EPS
        assert bytes(e.bytes).decode("utf-8", errors="replace") == e.token


def test_greedy_chat_logprobs_are_the_likeliest_tokens_and_spell_the_reply(client):
    r = chat(client)
    choice = r.choices[0]
    entries = choice.logprobs.content
    assert all(isinstance(e, ChatCompletionTokenLogprob) for e in entries)  # the client's types
    check_greedy(entries, 5)
    assert "".join(e.token for e in entries) == choice.message.content
    assert bytes(b for e in entries for b in e.bytes).decode() == choice.message.content
    # One entry per generated token: the reply's, plus the end of generation if it stopped.
    assert len(entries) == r.usage.completion_tokens - (choice.finish_reason == "stop")
    assert choice.logprobs.refusal is None


def test_streaming_carries_the_same_values_chunk_by_chunk(client):
    whole = chat(client).choices[0]
    text, entries = [], []
    for event in chat(client, stream=True):
        for c in event.choices:
            if c.delta.content:
                text.append(c.delta.content)
                # Each piece of text comes with the tokens that wrote it.
                assert "".join(e.token for e in c.logprobs.content) == c.delta.content
            if c.logprobs is not None:
                entries += c.logprobs.content
    assert "".join(text) == whole.message.content
    assert [e.token for e in entries] == [e.token for e in whole.logprobs.content]
    for a, b in zip(entries, whole.logprobs.content, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=BATCH_TOLERANCE)
        assert [t.token for t in a.top_logprobs] == [t.token for t in b.top_logprobs]


def test_a_batched_run_gives_the_same_logprobs_as_alone(client):
    alone = chat(client).choices[0].logprobs.content
    others = [
        [{"role": "user", "content": q}]
        for q in ("Count to twenty.", "Name a fruit.", "Write a haiku about snow.")
    ]

    def one(messages):
        return chat(client, messages=messages, max_tokens=40).choices[0].logprobs.content

    with ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(one, m) for m in others]
        batched = pool.submit(one, MESSAGES).result()
        assert all(f.result() for f in busy)
    # Own max_tokens differs (24 vs 40): compare the steps both took.
    assert [e.token for e in batched[: len(alone)]] == [e.token for e in alone]
    diffs = [abs(a.logprob - b.logprob) for a, b in zip(alone, batched, strict=False)]
    assert max(diffs) <= BATCH_TOLERANCE


def test_n_choices_each_carry_their_own(client):
    r = chat(client, n=2, top_logprobs=2)
    assert len(r.choices) == 2
    for c in r.choices:
        check_greedy(c.logprobs.content, 2)
        assert "".join(e.token for e in c.logprobs.content) == c.message.content
    first, second = (c.logprobs.content for c in r.choices)
    assert [e.token for e in first] == [e.token for e in second]
    assert [e.logprob for e in first] == pytest.approx(
        [e.logprob for e in second], abs=BATCH_TOLERANCE
    )


def test_no_alternatives_unless_asked_and_none_at_all_without_logprobs(client):
    r = chat(client, top_logprobs=None)
    assert r.choices[0].logprobs.content and all(
        e.top_logprobs == [] for e in r.choices[0].logprobs.content
    )
    plain = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=4, temperature=0
    )
    assert plain.choices[0].logprobs is None


def test_a_stop_string_reports_only_tokens_whose_text_showed(client):
    full = chat(client).choices[0]
    tokens = [e.token for e in full.logprobs.content]
    k = next(i for i, t in enumerate(tokens) if i >= 2 and t.startswith(" "))  # " word" mid-reply
    # The stop string is that token whole: it shows nothing of it, nor reports it.
    cut = chat(client, stop=[tokens[k]]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == "".join(tokens[:k])
    assert [e.token for e in cut.logprobs.content] == tokens[:k]
    # The stop string is the word without its space: the space showed, so the token is reported.
    cut = chat(client, stop=[tokens[k].strip()]).choices[0]
    assert cut.message.content == "".join(tokens[:k]) + " "
    assert [e.token for e in cut.logprobs.content] == tokens[: k + 1]
    for a, b in zip(cut.logprobs.content, full.logprobs.content, strict=False):
        assert a.logprob == pytest.approx(b.logprob, abs=BATCH_TOLERANCE)


def test_completions_logprobs_shape(client):
    args = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 12}
    r = client.completions.create(**args, temperature=0, logprobs=3)
    choice = r.choices[0]
    lp = choice.logprobs
    n = len(lp.tokens)
    assert n and len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    assert "".join(lp.tokens) == choice.text
    for token, value, top, offset in zip(
        lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset, strict=True
    ):
        assert choice.text[offset : offset + len(token)] == token
        assert 1 <= len(top) <= 3 and value <= 0
        assert value == pytest.approx(max(top.values())) and top.get(token) == value
    streamed = list(client.completions.create(**args, temperature=0, logprobs=3, stream=True))
    tokens = [t for e in streamed for c in e.choices if c.logprobs for t in c.logprobs.tokens]
    offsets = [o for e in streamed for c in e.choices if c.logprobs for o in c.logprobs.text_offset]
    assert tokens == lp.tokens and offsets == lp.text_offset


def test_ollama_chat_and_generate_shapes(server):
    c = ollama.Client(host=server.url)
    options = {"temperature": 0, "num_predict": 16, "repeat_penalty": 1.0}
    r = c.chat(model=MODEL, messages=MESSAGES, options=options, logprobs=True, top_logprobs=3)
    assert r.logprobs and "".join(e.token for e in r.logprobs) == r.message.content
    for e in r.logprobs:
        assert e.logprob <= 0 and 1 <= len(e.top_logprobs) <= 3
        assert all(e.logprob >= t.logprob - EPS for t in e.top_logprobs)
    # Streamed: each line's entries spell that line's text; together, the same values.
    lines = list(
        c.generate(model=MODEL, prompt="Say hello.", options=options, logprobs=True, stream=True)
    )
    for line in lines:
        if line.response:
            assert "".join(e.token for e in line.logprobs) == line.response
            assert all(not e.top_logprobs for e in line.logprobs)  # none asked
    whole = c.generate(model=MODEL, prompt="Say hello.", options=options, logprobs=True)
    streamed = [(e.token, e.logprob) for line in lines for e in line.logprobs or ()]
    assert [t for t, _ in streamed] == [e.token for e in whole.logprobs]
    raw = httpx.post(
        server.url + "/api/generate",
        json={
            "model": MODEL,
            "prompt": "Hi",
            "stream": False,
            "options": options,
            "logprobs": True,
        },
        timeout=120,  # a slow machine
    ).json()
    assert set(raw["logprobs"][0]) == {"token", "logprob", "bytes"}  # no empty top_logprobs
    plain = c.chat(model=MODEL, messages=MESSAGES, options={**options, "num_predict": 2})
    assert plain.logprobs is None


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs, as OpenAI refuses it
        ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ],
)
def test_bad_chat_logprobs_are_400_naming_the_field(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=2, extra_body=extra
        )
    assert e.value.body["param"] == param and "top_logprobs" in e.value.body["message"]


@pytest.mark.parametrize(
    ("extra", "param"), [({"logprobs": 6}, "logprobs"), ({"logprobs": 1, "echo": True}, "echo")]
)
def test_bad_completion_logprobs_are_400(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, extra_body=extra)
    assert e.value.body["param"] == param


def test_ollama_top_logprobs_over_20_is_a_400_in_ollamas_shape(server):
    r = httpx.post(
        server.url + "/api/chat",
        json={"model": MODEL, "messages": MESSAGES, "logprobs": True, "top_logprobs": 21},
        timeout=30,
    )
    assert r.status_code == 400
    assert "top_logprobs must be between 0 and 20" in r.json()["error"]
