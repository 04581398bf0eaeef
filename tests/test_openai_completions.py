"""POST /v1/completions (what LangChain's OpenAI LLM class calls) and /v1/models."""

from __future__ import annotations

from openai.types import Completion, Model

MODEL = "SmolLM2-135M-Instruct"


def test_models_lists_every_served_name(client):
    models = client.models.list().data
    assert all(isinstance(m, Model) for m in models)
    assert [m.id for m in models] == ["SmolLM2-135M-Instruct", "smol"]
    assert client.models.retrieve("smol").id == "smol"


def test_completion_string_prompt(client):
    r = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert isinstance(r, Completion) and r.object == "text_completion"
    assert r.choices[0].text.strip()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == 5 and 0 < r.usage.completion_tokens <= 8


def test_completion_default_max_tokens_is_16(client):
    r = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0)
    assert r.usage.completion_tokens == 16 and r.choices[0].finish_reason == "length"


def test_completion_list_of_prompts(client):
    prompts = ["One, two, three,", "Monday, Tuesday,"]
    r = client.completions.create(model=MODEL, prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    for p, c in zip(prompts, r.choices, strict=True):
        alone = client.completions.create(model=MODEL, prompt=p, max_tokens=6, temperature=0)
        assert c.text == alone.choices[0].text


def test_completion_token_prompt_and_echo(client):
    r = client.completions.create(
        model=MODEL, prompt="Hello there", max_tokens=4, temperature=0, echo=True
    )
    assert r.choices[0].text.startswith("Hello there")
    ids = client.completions.create(model=MODEL, prompt=[19556, 665], max_tokens=4, temperature=0)
    assert ids.usage.prompt_tokens == 2


def test_completion_streaming(client):
    kw = dict(model=MODEL, prompt="Monday, Tuesday,", max_tokens=10, temperature=0)
    whole = client.completions.create(**kw).choices[0].text
    chunks = list(
        client.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-1].usage.completion_tokens == 10
