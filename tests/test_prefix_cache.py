"""The llama.cpp engine's shared KV pool, on a real server: a prefix is read once
and shared by every request that starts with it (running or finished, arriving
together or not), memory is taken as sequences grow and a full pool makes the
newest wait instead of failing, and usage says what was reused and what was read."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.conftest import start_server, together

MODEL = "SmolLM2-135M-Instruct"
QUESTIONS = ["a cat", "the sea", "a robot", "winter", "bread", "a river", "chess", "owls"]


def system_prompt(n_rules: int = 12) -> str:
    """About 30 tokens a rule, opened by a fresh salt so no cache has seen it."""
    salt = uuid.uuid4().hex[:8]
    rules = " ".join(
        f"Rule {i} ({salt}): answer plainly, name one fact and one question a reader "
        "might ask next."
        for i in range(n_rules)
    )
    return f"[{salt}] You are a careful assistant. {rules}"


def messages(system: str, question: str) -> list[dict]:
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Describe {question}."},
    ]


def ask(server, system: str, question: str, max_tokens: int = 12, **kw) -> dict:
    r = httpx.post(
        server.v1 + "/chat/completions",
        json={
            "model": MODEL,
            "messages": messages(system, question),
            "max_tokens": max_tokens,
            "temperature": 0,
            **kw,
        },
        timeout=300,
    )
    assert r.status_code == 200, r.text
    return r.json()


def cached(reply: dict) -> int:
    return reply["usage"]["prompt_tokens_details"]["cached_tokens"]


def cells(server) -> dict:
    return httpx.get(server.url + "/health").json()["models"][0]["kv_cache"]


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory):
    s = start_server(
        tmp_path_factory.mktemp("pool"),
        *("--parallel", "8", "--max-model-len", "1024", "--kv-cache-size", "6144"),
    )
    yield s
    s.stop()


def test_requests_arriving_together_read_their_shared_prompt_once(pool_server):
    system = system_prompt()
    replies = together(lambda q: ask(pool_server, system, q), QUESTIONS)
    prompt = min(r["usage"]["prompt_tokens"] for r in replies)
    assert prompt > 300
    hits = sorted(cached(r) for r in replies)
    # One read the system prompt; the seven others joined it in the cache.
    assert hits[0] < 8
    assert all(h >= prompt - 20 for h in hits[1:]), hits
    # And what they answered is what each says alone, its prefix from the cache.
    alone = [ask(pool_server, system, q) for q in QUESTIONS]
    assert [r["choices"][0]["message"]["content"] for r in replies] == [
        r["choices"][0]["message"]["content"] for r in alone
    ]
    assert all(cached(r) >= prompt - 20 for r in alone)


def test_a_running_request_shares_its_prefix(pool_server):
    system = system_prompt()
    body = {
        "model": MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "Go."}],
        "max_tokens": 400,
        "temperature": 0,
        "logit_bias": {"2": -100},  # no end of text: it runs until we are done
        "stream": True,
    }
    with httpx.stream("POST", pool_server.v1 + "/chat/completions", json=body, timeout=300) as r:
        lines = r.iter_lines()
        next(lines)  # it has read its prompt and is generating
        reply = ask(pool_server, system, "a cat")
        assert httpx.get(pool_server.url + "/health").json()["models"][0]["running"] == 1
    assert cached(reply) >= reply["usage"]["prompt_tokens"] - 20


def test_greedy_output_is_the_same_from_the_cache_or_computed(pool_server):
    system = system_prompt()
    kw = {"max_tokens": 24, "logprobs": True, "top_logprobs": 3}
    computed = ask(pool_server, system, "the moon", **kw)
    from_cache = ask(pool_server, system, "the moon", **kw)
    assert cached(computed) < 8  # the template's opening at most
    assert cached(from_cache) == from_cache["usage"]["prompt_tokens"] - 1  # all but the last
    assert from_cache["choices"][0]["logprobs"] == computed["choices"][0]["logprobs"]


def test_health_counts_the_pool(pool_server):
    ask(pool_server, system_prompt(), "bread")
    c = cells(pool_server)
    assert c["used"] == 0  # nothing runs now
    assert c["cached"] > 300 and c["used"] + c["cached"] + c["free"] == 6144
    info = httpx.get(pool_server.url + "/api/ps").json()
    assert info["models"]


def streamed(server, system: str, question: str, **kw) -> dict:
    """``ask``, streamed: the text, its logprobs, the finish reason, and when the
    first and the last piece arrived."""
    body = {"model": MODEL, "messages": messages(system, question), "temperature": 0}
    out: dict = {"content": "", "logprobs": [], "first": None}
    with httpx.stream(
        "POST", server.v1 + "/chat/completions", json={**body, **kw, "stream": True}, timeout=600
    ) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            [choice] = json.loads(line[len("data: ") :])["choices"]
            if choice["delta"].get("content"):
                out["first"] = out["first"] or time.monotonic()
                out["content"] += choice["delta"]["content"]
            out["logprobs"] += (choice.get("logprobs") or {}).get("content") or []
            out["finish_reason"] = choice["finish_reason"] or out.get("finish_reason")
    out["last"] = time.monotonic()
    return out


def test_a_full_pool_makes_the_newest_wait_and_loses_nothing(tmp_path):
    """Four sequences that need 4 x 450 cells on a pool of 1024: they take turns
    (the newest wait, or are preempted and resumed) and each says what it says alone."""
    server = start_server(
        tmp_path, *("--parallel", "4", "--max-model-len", "512", "--kv-cache-size", "1024")
    )
    try:
        prompts = [system_prompt(8) for _ in range(4)]
        kw = {"max_tokens": 200, "logit_bias": {"2": -100}, "logprobs": True}

        start = time.monotonic()
        busy = together(lambda i: streamed(server, prompts[i], QUESTIONS[i], **kw), [0, 1, 2, 3])
        assert time.monotonic() - start < 600
        assert all(r["finish_reason"] == "length" and len(r["logprobs"]) == 200 for r in busy)
        # They took turns: some request's reply began only after another had ended
        # (at most two fit the pool at once; a preempted one stalls mid-reply instead,
        # and the server says so in its log).
        waited = any(a["first"] > b["last"] for a in busy for b in busy)
        assert waited or "The KV cache pool (1024 tokens) is full" in server.log()
        alone = [ask(server, prompts[i], QUESTIONS[i], **kw) for i in range(4)]
        for r, a in zip(busy, alone, strict=True):
            # A sequence that waited finds its cells scattered through the pool, between
            # other sequences' and out of order: the attention kernel's numbers do not
            # depend on where cells sit, so its reply is the lone one to the last bit.
            assert r["content"] == a["choices"][0]["message"]["content"]
            assert r["logprobs"] == a["choices"][0]["logprobs"]["content"]
        c = cells(server)
        assert c["used"] == 0 and c["used"] + c["cached"] + c["free"] == 1024
    finally:
        server.stop()


def test_a_prompt_evicted_from_the_pool_comes_back_from_host_memory(tmp_path):
    """A pool too small for three prompts evicts the oldest to host memory; asked
    again, it is restored, not read, and answers to the last bit as computed."""
    server = start_server(
        tmp_path, *("--parallel", "2", "--max-model-len", "1024", "--kv-cache-size", "1024")
    )
    try:
        kw = {"max_tokens": 24, "logprobs": True, "top_logprobs": 3}
        first = system_prompt()
        computed = ask(server, first, "the moon", **kw)
        assert cached(computed) < 8
        for _ in range(2):  # two more prompts of ~400 tokens push it out of the pool
            ask(server, system_prompt(), "bread")
        c = cells(server)
        assert c["host"] >= computed["usage"]["prompt_tokens"]
        assert c["cached"] + c["free"] == 1024
        again = ask(server, first, "the moon", **kw)
        assert cached(again) == again["usage"]["prompt_tokens"] - 1  # all but the last
        assert again["choices"][0]["logprobs"] == computed["choices"][0]["logprobs"]
    finally:
        server.stop()


def test_ollama_counts_the_whole_prompt_and_what_the_cache_gave(pool_server):
    system = system_prompt()

    def chat() -> dict:
        r = httpx.post(
            pool_server.url + "/api/chat",
            json={
                "model": MODEL,
                "messages": messages(system, "owls"),
                "stream": False,
                "options": {"num_predict": 8, "temperature": 0},
            },
            timeout=300,
        )
        assert r.status_code == 200, r.text
        return r.json()

    first, again = chat(), chat()
    assert first["prompt_eval_count"] == again["prompt_eval_count"] > 300  # the whole prompt
    assert first.get("prompt_eval_cached_count", 0) < 8  # left out when none
    assert again["prompt_eval_cached_count"] == again["prompt_eval_count"] - 1  # all but the last
