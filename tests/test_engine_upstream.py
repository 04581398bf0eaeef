"""The upstream engine: a second real server on loopback (the shared llmkit
server, which speaks both dialects) as the backend, reached in each dialect
(``openai://``, ``ollama://``, and detected from ``http://``), through the real
``openai`` and ``ollama`` clients; upstream errors in the caller's dialect; a
dead address answering 502 quickly. The pure parts (bodies, URLs) are tested in
``test_client_bodies``, the adapter over scripted servers in ``test_engine_upstream_unit``."""

from __future__ import annotations

import time

import httpx
import ollama
import openai
import pytest

from tests.conftest import Server, free_port, start_server

MESSAGES = [{"role": "user", "content": "Name three colours."}]
DEAD = free_port()  # nothing listens here
# An Ollama request samples as ``direct_chat`` does: without these, Ollama's own
# defaults (top_k 40, top_p 0.9, repeat_penalty 1.1) apply and rightly change the reply.
OLLAMA_AS_DIRECT = {"num_predict": 12, "temperature": 0, "top_k": 0, "top_p": 1.0,
                    "repeat_penalty": 1.0}  # fmt: skip


@pytest.fixture(scope="module")
def proxy(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Server:
    host = server.url.removeprefix("http://")
    tmp = tmp_path_factory.mktemp("upstream")
    config = tmp / "models.yaml"
    config.write_text(
        f"""
models:
  - engine: upstream
    upstream: openai://{host}/v1
    model: smol
    served_model_name: [via-openai]
  - upstream: ollama://{host}
    model: smol
    served_model_name: [via-ollama]
  - upstream: http://{host}
    model: smol
    served_model_name: [via-detected]
  - upstream: http://127.0.0.1:{DEAD}
    model: gone
    served_model_name: [dead]
  - upstream: ollama://{host}   # no model: every model the upstream serves
"""
    )
    s = start_server(tmp, "--config", str(config))
    yield s
    s.stop()


def direct_chat(server: Server, **kw: object) -> openai.types.chat.ChatCompletion:
    return server.client().chat.completions.create(
        model="smol", messages=MESSAGES, max_tokens=12, temperature=0, **kw
    )


def test_listings_show_every_upstream_model(proxy, server):
    ids = {m.id: m.model_extra["max_model_len"] for m in proxy.client().models.list().data}
    assert ids == {
        "via-openai": 8192,
        "via-ollama": 8192,
        "via-detected": 8192,
        "dead": 0,  # not reachable: its context is unknown
        # Every model of an Ollama-dialect upstream, under the names its /api/tags gives.
        "SmolLM2-135M-Instruct:latest": 8192,
        "smol:latest": 8192,
    }
    tags = ollama.Client(host=proxy.url).list().models
    assert "via-ollama:latest" in [m.model for m in tags]
    show = ollama.Client(host=proxy.url).show("via-ollama")  # the upstream's own description
    assert show.details.family == "llama" and show.details.quantization_level == "Q4_1"
    log = proxy.log()
    assert f"The upstream server http://127.0.0.1:{DEAD} is not answering" in log
    # llmkit answers both dialects; the OpenAI one tells more (max_model_len, /tokenize).
    assert f"{server.url} speaks the openai dialect" in log


def test_an_ollama_server_gets_the_openai_api(proxy, server):
    want = direct_chat(server)
    got = proxy.client().chat.completions.create(
        model="via-ollama", messages=MESSAGES, max_tokens=12, temperature=0
    )
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.choices[0].finish_reason == "length"
    assert got.usage.prompt_tokens == want.usage.prompt_tokens
    assert got.usage.completion_tokens == 12
    stream = proxy.client().chat.completions.create(
        model="via-ollama",
        messages=MESSAGES,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 12


def test_an_openai_server_gets_the_ollama_api(proxy, server):
    want = direct_chat(server).choices[0].message.content
    o = ollama.Client(host=proxy.url)
    options = OLLAMA_AS_DIRECT
    reply = o.chat(model="via-openai", messages=MESSAGES, options=options)
    assert reply.message.content == want and reply.eval_count == 12
    parts = list(o.chat(model="via-detected", messages=MESSAGES, options=options, stream=True))
    assert "".join(p.message.content for p in parts) == want
    assert parts[-1].done and parts[-1].done_reason == "length"
    # /api/generate through an OpenAI-style upstream that has /tokenize: context too.
    gen = o.generate(model="via-openai", prompt="Roses are", options=options)
    assert gen.response and gen.context


def test_stop_and_seed_pass_through(proxy, server):
    direct = server.client().chat.completions.create(
        model="smol", messages=MESSAGES, max_tokens=24, temperature=0.9, seed=7, stop=["\n"]
    )
    for model in ("via-openai", "via-ollama"):
        got = proxy.client().chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=24, temperature=0.9, seed=7, stop=["\n"]
        )
        assert got.choices[0].message.content == direct.choices[0].message.content, model
        assert "\n" not in got.choices[0].message.content


def test_logprobs_pass_through_either_dialect(proxy, server):
    """The upstream computes them; the proxy hands them on, in its caller's dialect."""
    want = direct_chat(server, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    expected = [(e.token, e.logprob, [t.token for t in e.top_logprobs]) for e in want]
    for model in ("via-openai", "via-ollama"):
        got = proxy.client().chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=12, temperature=0,
            logprobs=True, top_logprobs=2, stream=True,
        )  # fmt: skip
        entries = [e for c in got for ch in c.choices if ch.logprobs for e in ch.logprobs.content]
        assert [(e.token, e.logprob, [t.token for t in e.top_logprobs]) for e in entries] == [
            (t, pytest.approx(v, abs=1e-3), top) for t, v, top in expected
        ], model
    o = ollama.Client(host=proxy.url)
    options = OLLAMA_AS_DIRECT
    reply = o.chat(model="via-openai", messages=MESSAGES, options=options, logprobs=True)
    assert [e.token for e in reply.logprobs] == [t for t, _, _ in expected]
    gen = o.generate(model="via-openai", prompt="Roses are", options=options, logprobs=True)
    assert "".join(e.token for e in gen.logprobs) == gen.response  # the completions shape


def test_upstream_errors_come_back_in_the_callers_dialect(proxy):
    # The OpenAI caller of an Ollama upstream: Ollama's {"error"} becomes OpenAI's shape.
    with pytest.raises(openai.BadRequestError) as e:
        proxy.client().chat.completions.create(
            model="via-ollama", messages=MESSAGES, max_tokens=100_000
        )
    assert e.value.status_code == 400
    assert "maximum context length is 8192 tokens" in e.value.body["message"]
    # The Ollama caller of an OpenAI upstream: OpenAI's error object becomes {"error": "..."}.
    r = httpx.post(
        proxy.url + "/api/chat",
        json={"model": "via-openai", "messages": MESSAGES, "options": {"num_predict": 100_000}},
    )
    assert r.status_code == 400
    assert "maximum context length is 8192 tokens" in r.json()["error"]
    with pytest.raises(ollama.ResponseError) as oe:
        ollama.Client(host=proxy.url).chat(
            model="via-openai", messages=MESSAGES, options={"num_predict": 100_000}
        )
    assert oe.value.status_code == 400


def test_tokenize_where_the_upstream_can(proxy):
    body = {"model": "via-openai", "messages": MESSAGES}
    r = httpx.post(proxy.url + "/tokenize", json=body)
    assert r.status_code == 200 and r.json()["count"] > 5
    r = httpx.post(proxy.url + "/tokenize", json={**body, "model": "via-ollama"})
    assert r.status_code == 400
    assert "cannot tokenize" in r.json()["error"]["message"]


def test_a_dead_upstream_is_a_quick_502_naming_it(proxy):
    address = f"127.0.0.1:{DEAD}"
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        proxy.client().chat.completions.create(model="dead", messages=MESSAGES, max_tokens=4)
    assert e.value.status_code == 502 and address in e.value.message
    with pytest.raises(openai.APIStatusError) as e:
        stream = proxy.client().chat.completions.create(
            model="dead", messages=MESSAGES, max_tokens=4, stream=True
        )
        list(stream)
    assert e.value.status_code == 502
    with pytest.raises(ollama.ResponseError) as oe:
        ollama.Client(host=proxy.url).chat(model="dead", messages=MESSAGES)
    assert oe.value.status_code == 502 and address in oe.value.error
    assert time.monotonic() - start < 10  # refused at once, never a hang
    assert httpx.get(proxy.url + "/health").status_code == 200  # the others still serve
