"""Thinking switches on the bundled model, which cannot think, through a real
``llmkit serve`` and the real clients: switching thinking off (or naming an
effort) is accepted everywhere and leaves the prompt as it was, so a greedy
reply is the same as without it; asking for thinking outright is each
dialect's own 400 (Ollama's words exactly); a bad value is a 400 naming the
values it takes."""

from __future__ import annotations

import anthropic
import ollama
import openai
import pytest

from tests.conftest import Server

MODEL = "SmolLM2-135M-Instruct"
ASK = [{"role": "user", "content": "Name a colour."}]
REFUSED = f'"{MODEL}" does not support thinking'


@pytest.fixture()
def olla(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url)


@pytest.fixture()
def claude(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def test_openai_thinking_off_and_efforts_change_nothing(client):
    def say(**kw: object) -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=8, temperature=0, **kw
        )

    base = say()
    for kw in (
        {"reasoning_effort": "none"},
        {"reasoning_effort": "high"},
        {"extra_body": {"chat_template_kwargs": {"enable_thinking": False}}},
        {"extra_body": {"think": False}},
    ):
        r = say(**kw)
        assert r.choices[0].message.content == base.choices[0].message.content
        assert r.usage.prompt_tokens == base.usage.prompt_tokens
        assert getattr(r.choices[0].message, "reasoning_content", None) is None
        assert r.usage.completion_tokens_details.reasoning_tokens == 0


def test_openai_thinking_asked_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, extra_body={"think": True})
    assert e.value.status_code == 400
    assert e.value.body["type"] == "invalid_request_error"
    assert (e.value.body["message"], e.value.body["param"]) == (REFUSED, "think")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, reasoning_effort="turbo")  # type: ignore[arg-type]
    assert e.value.body["param"] == "reasoning_effort" and '"minimal"' in e.value.body["message"]


def test_responses_effort_none_is_accepted(client):
    r = client.responses.create(
        model=MODEL, input="Name a colour.", reasoning={"effort": "none"}, max_output_tokens=8
    )
    assert [o.type for o in r.output] == ["message"] and r.reasoning.effort == "none"
    assert r.usage.output_tokens_details.reasoning_tokens == 0


def test_anthropic_disabled_is_accepted_and_enabled_refused(claude):
    msg = claude.messages.create(
        model=MODEL, max_tokens=8, messages=ASK, thinking={"type": "disabled"}
    )
    assert [b.type for b in msg.content] == ["text"]
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(
            model=MODEL,
            max_tokens=2048,
            messages=ASK,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    assert e.value.status_code == 400
    assert e.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": REFUSED},
    }


def test_ollama_think_false_is_accepted_and_true_refused_in_its_words(olla):
    base = olla.chat(model=MODEL, messages=ASK, options={"temperature": 0, "num_predict": 8})
    off = olla.chat(
        model=MODEL, messages=ASK, think=False, options={"temperature": 0, "num_predict": 8}
    )
    assert off.message.content == base.message.content and off.message.thinking is None
    g = olla.generate(model=MODEL, prompt="Name a colour.", think=False, options={"num_predict": 4})
    assert g.thinking is None and g.done
    for think in (True, "high"):
        with pytest.raises(ollama.ResponseError) as e:
            olla.chat(model=MODEL, messages=ASK, think=think)  # type: ignore[arg-type]
        assert (e.value.status_code, e.value.error) == (400, REFUSED)
    with pytest.raises(ollama.ResponseError) as e:
        olla.generate(model="smol", prompt="Hi", think=True)
    assert e.value.error == '"smol" does not support thinking'  # the name as asked, as Ollama
    with pytest.raises(ollama.ResponseError) as e:
        olla.chat(model=MODEL, messages=ASK, think="yes")  # type: ignore[arg-type]
    assert e.value.status_code == 400 and e.value.error.startswith('invalid think value: "yes"')
    assert "thinking" not in olla.show(MODEL).capabilities
