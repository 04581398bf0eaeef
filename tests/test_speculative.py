"""Speculative decoding on the llama.cpp engine (on by default: drafts from each
request's own prompt and reply), held to the same engine with it switched off
for the request (``speculative: false``), which decodes one token per step:
greedy replies, their log-probabilities, JSON grammars, forced tool calls and
stop strings come out the same; a copy-heavy request has drafts accepted
(``/metrics``, ``/health``); and the acceptance rule keeps the target
distribution (against the distribution itself, by sampling)."""

from __future__ import annotations

import json
import random
import re

import httpx
import numpy as np
import pytest

from llmkit.engines.llamacpp.draft import (
    BRANCH,
    FIXED_PER_ROW,
    LOOP,
    SURE,
    DraftPolicy,
    StepCost,
    SuffixIndex,
)
from llmkit.engines.speculation import accept_draft, accept_point_draft

MODEL = "SmolLM2-135M-Instruct"
CODE = "\n".join(f"def scale_{i}(x):\n    return x * {i} + {i * 3}\n" for i in range(5))
COPY = f"Return this Python code exactly as it is, with no comment:\n\n{CODE}"
OFF = {"speculative": False}


def chat(client, content: str, extra: dict | None = None, **kw):
    args = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    args |= {"max_tokens": 48, "temperature": 0, **kw}
    return client.chat.completions.create(**args, extra_body=extra or {})


def counts(server) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics").text
    found = re.findall(rf'llmkit_speculative_(\w+)_total{{model="{MODEL}"}} (\S+)', text)
    return {k: float(v) for k, v in found}


# -- the acceptance rule, against the distribution it must keep ------------------------


def test_accepted_or_resampled_tokens_follow_the_target_distribution():
    rng = np.random.default_rng(7)
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    q = np.array([0.1, 0.4, 0.1, 0.3, 0.1])  # a draft that is often wrong
    n = 40_000
    got = np.zeros(len(p))
    kept = 0
    for _ in range(n):
        drafted = int(rng.choice(len(q), p=q))
        token, accepted = accept_draft(p, q, drafted, rng)
        got[token] += 1
        kept += accepted
    assert np.abs(got / n - p).max() < 0.01  # 4 standard errors at most
    # The acceptance rate is sum(min(p, q)), as the rule's derivation says.
    assert kept / n == pytest.approx(np.minimum(p, q).sum(), abs=0.01)
    # A single drafted token (prompt lookup): q a point mass, kept with probability p(x).
    got[:] = 0
    kept = 0
    for _ in range(n):
        token, accepted = accept_point_draft(p, 1, rng)
        got[token] += 1
        kept += accepted
        one_hot = np.eye(len(p))[1]
        ref, _ = accept_draft(p, one_hot, 1, rng)  # the general rule, same law
        got[ref] += 1
    assert np.abs(got / (2 * n) - p).max() < 0.01
    assert kept / n == pytest.approx(p[1], abs=0.01)


def test_the_suffix_index_drafts_what_followed_the_longest_earlier_match():
    rnd = random.Random(3)
    for _ in range(60):
        text = [rnd.randrange(4) for _ in range(rnd.randrange(1, 120))]
        index = SuffixIndex(text[:10])
        for t in text[10:]:
            index.extend(t)
        n, end = index.match()
        # Brute force: the longest suffix that also ends earlier, at its first place.
        best, where = 0, -1
        for length in range(1, len(text)):
            suffix = text[-length:]
            ends = [
                e
                for e in range(length - 1, len(text) - 1)
                if text[e - length + 1 : e + 1] == suffix
            ]
            if ends:
                best, where = length, ends[0]
        assert (n, end) == (best, where)
        tokens, kinds = index.candidates(40)
        if n < 2:
            assert tokens == kinds == []
            continue
        # What followed it, and where that runs into the end of the text, the text
        # repeating itself with that period.
        expected = text[end + 1 :]
        while len(expected) < 40:
            expected.append(expected[len(expected) - (len(text) - end - 1)])
        assert tokens == expected[:40]
        assert index.draft(5) == tokens[:5]
        for i, kind in enumerate(kinds):
            # What the index knows of each drafted token: the tokens that followed
            # the match and the draft before it, wherever they occurred.
            seen = text[-n:] + tokens[:i]
            follow = {
                text[e + 1]
                for e in range(len(seen) - 1, len(text) - 1)
                if text[e - len(seen) + 1 : e + 1] == seen
            }
            occurs = any(
                text[e - len(seen) + 1 : e + 1] == seen for e in range(len(seen) - 1, len(text))
            )
            want = LOOP if not occurs else SURE if len(follow) <= 1 else BRANCH
            assert kind == want, (text, i)


def test_drafts_are_cut_where_the_expected_tokens_per_step_peak():
    policy = DraftPolicy()
    # A fresh sequence trusts a token its context was always followed by more than
    # one that context was followed by others too.
    assert policy.cut([SURE] * 32, 2.3) > policy.cut([BRANCH] * 32, 2.3)
    # Where a row costs next to nothing beside the step (a GPU), drafts run longer.
    assert policy.cut([SURE] * 32, 100.0) > policy.cut([SURE] * 32, 2.3) > 0
    # Drafts that keep holding are cut later; drafts that keep failing, not drafted.
    held, failed = DraftPolicy(), DraftPolicy()
    for _ in range(20):
        held.step()
        held.update([SURE] * 8, 8)
        failed.step()
        failed.update([SURE] * 8, 0)
    assert held.cut([SURE] * 32, 2.3) == 32
    assert failed.cut([SURE] * 32, 2.3) == 0
    # After a long while without drafts, the sequence tries again.
    for _ in range(400):
        failed.step()
    assert failed.cut([SURE] * 32, 2.3) > 0
    # A step shared by several streams makes each draft pay for more of itself.
    assert held.cut([BRANCH] * 32, 2.3, streams=4) <= held.cut([BRANCH] * 32, 2.3)


def test_the_step_cost_is_fitted_from_the_steps_timed():
    cost = StepCost()
    assert cost.fixed_per_row() == FIXED_PER_ROW  # nothing measured yet
    rnd = random.Random(5)
    for _ in range(200):
        rows = rnd.randrange(1, 33)
        cost.observe(rows, 0.020 + 0.0005 * rows)  # rows nearly free beside the step
    assert cost.fixed_per_row() == pytest.approx(40.0, rel=0.01)
    same = StepCost()
    for _ in range(200):
        same.observe(1, 0.012)  # steps all of one size say nothing of a row's cost
    assert same.fixed_per_row() == FIXED_PER_ROW


# -- end to end, on the shared server -----------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        COPY,
        "Quote the sentence that names the river, word for word.\n\nThe town lies in a "
        "valley. The river Aire runs through its centre and floods each spring. Its "
        "market is held on Saturdays.",
        "Write a short story about a lighthouse keeper.",
    ],
)
def test_greedy_replies_and_logprobs_are_the_same_with_and_without(client, content):
    on = chat(client, content, logprobs=True, top_logprobs=3)
    off = chat(client, content, OFF, logprobs=True, top_logprobs=3)
    assert on.choices[0].message.content == off.choices[0].message.content
    assert on.usage.completion_tokens == off.usage.completion_tokens
    lp_on = [
        (e.token, e.logprob, [t.logprob for t in e.top_logprobs])
        for e in on.choices[0].logprobs.content
    ]
    lp_off = [
        (e.token, e.logprob, [t.logprob for t in e.top_logprobs])
        for e in off.choices[0].logprobs.content
    ]
    assert lp_on == lp_off  # to the bit: the logits of a verified row are a lone row's


def test_a_copy_heavy_request_has_drafts_accepted_and_the_switch_turns_them_off(server, client):
    before = counts(server)
    r = chat(client, COPY, max_tokens=64)
    after = counts(server)
    accepted = after["accepted"] - before.get("accepted", 0)
    assert accepted > 0
    assert after["drafted"] - before.get("drafted", 0) >= accepted
    # max_tokens holds, however many tokens a step brought.
    assert r.usage.completion_tokens <= 64
    health = httpx.get(server.url + "/health").json()
    entry = next(m for m in health["models"] if m["name"] == MODEL)
    assert entry["speculative"]["accepted"] >= after["accepted"]
    chat(client, COPY, OFF, max_tokens=60)
    assert counts(server)["drafted"] == after["drafted"]


def test_usage_counts_each_token_once(client):
    on = chat(client, COPY, max_tokens=64, logprobs=True)
    # One log-probability per token generated (the reply's, and an end if it stopped).
    entries = on.choices[0].logprobs.content
    stopped = on.choices[0].finish_reason == "stop"
    assert len(entries) == on.usage.completion_tokens - stopped


def test_json_grammar_tool_call_and_stop_string_are_the_same(client):
    text = "Name: Ada Lovelace. Born: 1815. City: London. Field: mathematics."
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "born": {"type": "integer"},
                       "city": {"type": "string"}},
        "required": ["name", "born", "city"],
    }  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    asks = f"Fill the JSON from this text: {text}"
    on = chat(client, asks, response_format=fmt)
    off = chat(client, asks, OFF, response_format=fmt)
    assert on.choices[0].message.content == off.choices[0].message.content
    assert set(json.loads(on.choices[0].message.content)) == {"name", "born", "city"}

    tool = {
        "type": "function",
        "function": {"name": "save_person", "description": "Save a person", "parameters": schema},
    }
    on = chat(client, asks, tools=[tool], tool_choice="required")
    off = chat(client, asks, OFF, tools=[tool], tool_choice="required")
    call_on, call_off = on.choices[0].message.tool_calls[0], off.choices[0].message.tool_calls[0]
    assert call_on.function.name == call_off.function.name == "save_person"
    assert call_on.function.arguments == call_off.function.arguments
    assert on.choices[0].finish_reason == off.choices[0].finish_reason

    on = chat(client, COPY, stop=["scale_3"])
    off = chat(client, COPY, OFF, stop=["scale_3"])
    assert on.choices[0].message.content == off.choices[0].message.content
    assert "scale_3" not in on.choices[0].message.content
    assert on.usage.completion_tokens == off.usage.completion_tokens
