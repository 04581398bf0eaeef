"""A model's defaults (its Modelfile: a made model's, an Ollama model's layers)
applied once, by the served model, whatever the dialect.

First as tables: what a Modelfile does to a request, the manifests it is read
from (an older llmkit's included), and what reaches the engine from each
dialect's converter through a served model. Then against a real ``llmkit
serve``: a model from Ollama's store answers logprobs, and a made model's system
prompt, sampling, stop strings and ``num_predict`` hold in the OpenAI, Anthropic,
Responses and Ollama dialects, checked against the plain model asked the same
with those values spelled out (greedy on both sides, so the replies must match).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import anthropic
import httpx
import ollama
import pytest

from llmkit.api.anthropic import convert as anthropic_convert
from llmkit.api.anthropic import schemas as anthropic_schemas
from llmkit.api.ollama import convert as ollama_convert
from llmkit.api.ollama import schemas as ollama_schemas
from llmkit.api.openai import convert as openai_convert
from llmkit.api.openai import schemas as openai_schemas
from llmkit.core.types import (
    Chunk,
    EngineInfo,
    GenerateRequest,
    Message,
    SamplingParams,
    Usage,
)
from llmkit.engines.base import Engine
from llmkit.engines.registry import ServedModel
from llmkit.models.catalog import MANIFEST, Catalog
from llmkit.models.modelfile import Modelfile
from llmkit.models.ollama_store import ollama_entries
from tests.conftest import Server, start_server
from tests.test_other_models import SYSTEM as OLLAMA_SYSTEM
from tests.test_other_models import write_ollama

U = Message("user", "hi")
MF = Modelfile(
    system="Talk like a pirate.",
    parameters={
        "temperature": 0.2,
        "top_k": 5,
        "seed": -1,  # Ollama's "random": not a seed
        "stop": ["END", "<|x|>"],
        "num_predict": 7,
        "num_ctx": 512,
        "mirostat": 2,  # not one llmkit applies: ignored
    },
)


# -- the type, as tables ---------------------------------------------------------------


def test_parameters_are_defaults_that_a_requests_own_values_override():
    req = GenerateRequest(messages=(U,), sampling=SamplingParams(top_k=9), stop=("\n",))
    got = MF.apply(req)
    assert got.messages == (Message("system", MF.system), U)
    assert (got.sampling.temperature, got.sampling.top_k, got.sampling.seed) == (0.2, 9, None)
    assert got.stop == ("\n", "END", "<|x|>")  # added to the request's own
    assert (got.max_tokens, got.context_limit) == (7, 512)
    # What neither says is the dialect's default, filled after the Modelfile.
    settled = got.settled()
    assert settled.sampling.top_p == req.defaults.top_p and settled.sampling.temperature == 0.2

    own = replace(req, max_tokens=2, context_limit=256, sampling=SamplingParams(temperature=1.5))
    mine = MF.apply(own)
    assert (mine.max_tokens, mine.context_limit, mine.sampling.temperature) == (2, 256, 1.5)


@pytest.mark.parametrize(
    ("parameters", "sampling"),
    [
        ({}, SamplingParams()),
        ({"temperature": 0, "seed": 42}, SamplingParams(temperature=0.0, seed=42)),
        ({"top_k": "forty", "repeat_penalty": [1]}, SamplingParams()),  # not numbers: ignored
        ({"repeat_last_n": 32, "min_p": 0.1}, SamplingParams(repeat_last_n=32, min_p=0.1)),
    ],
)
def test_parameters_read_as_sampling(parameters, sampling):
    assert Modelfile(parameters=parameters).sampling == sampling


def test_num_ctx_and_num_predict_are_read_only_when_they_mean_a_number():
    assert Modelfile(parameters={"num_ctx": 0, "num_predict": -1}).num_ctx is None
    assert Modelfile(parameters={"num_predict": -2}).num_predict is None
    assert Modelfile(parameters={"stop": "###"}).stop == ("###",)
    assert Modelfile(parameters={"stop": 3}).stop == ()


def test_a_made_models_manifest_from_an_older_llmkit_still_loads(tmp_path, bundled_path):
    """The manifest format stays: no ``adapters`` key, as older versions wrote it."""
    folder = tmp_path / "pirate"
    folder.mkdir()
    (folder / "pirate.gguf").symlink_to(bundled_path)
    old = {
        "system": "Arr.",
        "template": "{{ .Prompt }}",
        "parameters": {"num_predict": 3, "stop": ["x"]},
        "messages": [{"role": "user", "content": "ahoy"}],
    }
    manifest = {"repo": "pirate", "source": "created", "complete": True, "modelfile": old}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    entry = Catalog(tmp_path).find("pirate")
    assert entry.modelfile == Modelfile(
        "Arr.", "{{ .Prompt }}", {"num_predict": 3, "stop": ["x"]}, (Message("user", "ahoy"),)
    )
    assert entry.modelfile.to_manifest() == old  # and written back the same way


def test_an_ollama_manifests_layers_are_its_modelfile(tmp_path, bundled_path):
    params = {"stop": ["Paris"], "num_ctx": 768, "temperature": 0}
    write_ollama(tmp_path, bundled_path, params)
    [tiny, smol] = ollama_entries(tmp_path)
    assert smol.name == "smol:latest" and tiny.modelfile == smol.modelfile
    assert smol.modelfile == Modelfile(OLLAMA_SYSTEM, "{{ .Prompt }}", params)
    assert (smol.modelfile.num_ctx, smol.modelfile.stop) == (768, ("Paris",))


# -- through a served model, from each dialect -------------------------------------------


class Recorder(Engine):
    """Keeps every request it is given; answers each with an empty reply."""

    def __init__(self) -> None:
        self.seen: list[GenerateRequest] = []

    async def generate(self, req):  # type: ignore[no-untyped-def, override]
        self.seen.append(req)
        yield Chunk(finish_reason="stop", usage=Usage(1, 0))

    async def tokenize(self, text, *, special=True):  # type: ignore[no-untyped-def]
        return [1]

    async def detokenize(self, ids):  # type: ignore[no-untyped-def]
        return ""

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(engine="recorder", model="m", context_length=4096)


def _sent(req: GenerateRequest, mf: Modelfile | None = MF) -> GenerateRequest:
    """What the engine of a model with ``mf`` is given for ``req``."""
    inner = Recorder()
    served = ServedModel(["m"], inner, modelfile=mf)

    async def go() -> None:
        async for _ in served.engine.generate(req):
            pass

    asyncio.run(go())
    [seen] = inner.seen
    return seen


HI = [{"role": "user", "content": "hi"}]
DIALECTS = {
    "openai": lambda **kw: openai_convert.from_chat_request(
        openai_schemas.ChatCompletionRequest.model_validate({"model": "m", "messages": HI, **kw})
    ),
    "anthropic": lambda **kw: anthropic_convert.from_messages_request(
        anthropic_schemas.MessagesRequest.model_validate(
            {"model": "m", "messages": HI, "max_tokens": 50, **kw}
        )
    ),
    "ollama": lambda **kw: ollama_convert.from_chat_request(
        ollama_schemas.ChatRequest.model_validate({"model": "m", "messages": HI, "options": kw})
    ),
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_dialect_gets_the_models_defaults_and_keeps_its_own_values(dialect):
    made = DIALECTS[dialect]
    seen = _sent(made())
    assert seen.messages == (Message("system", MF.system), U)
    assert seen.sampling.temperature == 0.2 and seen.sampling.top_k == 5
    assert "END" in seen.stop and seen.context_limit == 512
    # The rest is the dialect's own default, as without a Modelfile.
    plain = _sent(made(), None)
    assert seen.sampling.top_p == plain.sampling.top_p is not None
    assert seen.sampling.repeat_penalty == plain.sampling.repeat_penalty is not None
    # The request's own values win over the model's.
    own = _sent(made(temperature=0.75, top_k=3))
    assert (own.sampling.temperature, own.sampling.top_k) == (0.75, 3)


def test_num_predict_is_the_length_where_the_dialect_leaves_it_open():
    assert _sent(DIALECTS["openai"]()).max_tokens == 7
    assert _sent(DIALECTS["ollama"]()).max_tokens == 7
    assert _sent(DIALECTS["openai"](max_tokens=3)).max_tokens == 3
    assert _sent(DIALECTS["anthropic"]()).max_tokens == 50  # Anthropic's is always given


def test_without_a_modelfile_the_dialects_defaults_are_unchanged():
    assert _sent(DIALECTS["openai"](), None).sampling.temperature == 1.0
    ollama_sampling = _sent(DIALECTS["ollama"](), None).sampling
    assert (ollama_sampling.temperature, ollama_sampling.top_k) == (0.8, 40)
    assert ollama_sampling.repeat_penalty == 1.1


# -- a real server ---------------------------------------------------------------------

PLAIN = "SmolLM2-135M-Instruct"
SYSTEM = "You are a storyteller. Tell long stories."
STORY = [{"role": "user", "content": "Tell me a story about a cat and a boat."}]
LONG = 24  # tokens asked for explicitly: a request's own length wins over num_predict


@pytest.fixture(scope="module")
def srv(tmp_path_factory, bundled_path: str) -> Server:
    tmp = tmp_path_factory.mktemp("modelfile")
    write_ollama(tmp / "ollama", bundled_path, {"num_ctx": 768, "top_k": 1, "num_predict": 3})
    env = {"LLMKIT_MODELS": str(tmp / "models"), "OLLAMA_MODELS": str(tmp / "ollama")}
    # Ollama's model by --model (the catalog serves only its own models on demand).
    models = ["--model", "smol", "--model", PLAIN]
    s = start_server(tmp, *models, "--max-model-len", "2048", "--parallel", "2", env=env)
    yield s
    s.stop()


def test_a_model_from_ollamas_store_answers_logprobs(srv):
    """Its Modelfile no longer wraps its engine: the served model says what the
    engine can do, logprobs included (they were refused with a 400)."""
    r = srv.client().chat.completions.create(
        model="smol", messages=STORY, logprobs=True, top_logprobs=2
    )
    # The manifest's num_predict holds the reply (this request gives no max_tokens).
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    entries = r.choices[0].logprobs.content
    assert len(entries) == 3 and all(len(e.top_logprobs) == 2 for e in entries)
    # Its top_k 1 makes the reply the greedy one; its system prompt goes first.
    greedy = srv.client().chat.completions.create(
        model=PLAIN,
        messages=[{"role": "system", "content": OLLAMA_SYSTEM}, *STORY],
        max_tokens=3,
        temperature=0,
    )
    assert r.choices[0].message.content == greedy.choices[0].message.content
    assert r.usage.prompt_tokens == greedy.usage.prompt_tokens


def _stop_word(text: str) -> str:
    """A piece of the greedy reply's second half to make a stop string of."""
    half = len(text) // 2
    word = text[half : half + 4]
    assert len(text) >= 40 and text.index(word) >= 20, text  # the reference is long enough
    return word


def _cut(text: str, stop: str) -> str:
    return text[: text.index(stop)] if stop in text else text


@pytest.fixture(scope="module")
def made(srv) -> tuple[str, str]:
    """A model made from the plain one: a system prompt, top_k 1 (so greedy), a stop
    string from the plain model's own greedy story, and num_predict 3."""
    reference = srv.client().chat.completions.create(
        model=PLAIN,
        messages=[{"role": "system", "content": SYSTEM}, *STORY],
        max_tokens=LONG,
        temperature=0,
    )
    stop = _stop_word(reference.choices[0].message.content)
    params = {"top_k": 1, "stop": [stop], "num_predict": 3}
    client = ollama.Client(host=srv.url)
    assert (
        client.create("teller", from_=PLAIN, system=SYSTEM, parameters=params).status == "success"
    )
    return "teller", stop


def test_a_made_model_applies_in_the_openai_dialect(srv, made):
    name, stop = made
    oa = srv.client()
    by_hand = [{"role": "system", "content": SYSTEM}, *STORY]
    ref = oa.chat.completions.create(model=PLAIN, messages=by_hand, max_tokens=LONG, temperature=0)
    got = oa.chat.completions.create(model=name, messages=STORY, max_tokens=LONG)
    assert got.usage.prompt_tokens == ref.usage.prompt_tokens  # the system prompt went first
    assert got.choices[0].message.content == _cut(ref.choices[0].message.content, stop)
    assert got.choices[0].finish_reason == "stop"  # at the model's stop string
    short = oa.chat.completions.create(model=name, messages=STORY)  # num_predict 3
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    # A request's own system message wins: the prompt is the plain model's.
    own = oa.chat.completions.create(model=name, messages=by_hand, max_tokens=1)
    assert own.usage.prompt_tokens == ref.usage.prompt_tokens


def test_a_made_model_applies_in_the_anthropic_dialect(srv, made):
    name, stop = made
    claude = anthropic.Anthropic(base_url=srv.url, api_key="unused")
    ref = claude.messages.create(
        model=PLAIN,
        system=SYSTEM,
        messages=STORY,
        max_tokens=LONG,
        extra_body={"temperature": 0},  # this SDK has no parameter for it
    )
    got = claude.messages.create(model=name, messages=STORY, max_tokens=LONG)
    assert got.usage.input_tokens == ref.usage.input_tokens
    assert got.content[0].text == _cut(ref.content[0].text, stop)
    if stop in ref.content[0].text:
        assert (got.stop_reason, got.stop_sequence) == ("stop_sequence", stop)


def test_a_made_model_applies_in_the_responses_dialect(srv, made):
    name, stop = made
    oa = srv.client()
    ref = oa.responses.create(
        model=PLAIN, instructions=SYSTEM, input=STORY, max_output_tokens=LONG, temperature=0
    )
    got = oa.responses.create(model=name, input=STORY, max_output_tokens=LONG)
    assert got.usage.input_tokens == ref.usage.input_tokens
    assert got.output_text == _cut(ref.output_text, stop)


def test_a_made_model_applies_in_the_ollama_dialect(srv, made):
    name, stop = made
    client = ollama.Client(host=srv.url)
    by_hand = [{"role": "system", "content": SYSTEM}, *STORY]
    ref = client.chat(PLAIN, messages=by_hand, options={"num_predict": LONG, "top_k": 1})
    got = client.chat(name, messages=STORY, options={"num_predict": LONG})
    assert got.prompt_eval_count == ref.prompt_eval_count
    assert got.message.content == _cut(ref.message.content, stop)
    short = client.chat(name, messages=STORY)
    assert short.eval_count == 3 and short.done_reason == "length"


def test_show_still_shows_a_made_and_an_ollama_models_defaults(srv, made):
    name, stop = made
    shown = httpx.post(srv.url + "/api/show", json={"model": name}).json()
    assert shown["system"] == SYSTEM
    assert stop in shown["parameters"] and "num_predict 3" in shown["parameters"]
    smol = httpx.post(srv.url + "/api/show", json={"model": "smol"}).json()
    assert smol["system"] == OLLAMA_SYSTEM and smol["template"] == "{{ .Prompt }}"
    assert "top_k 1" in smol["parameters"] and smol["parameters"].count("num_ctx") == 1
    assert "PARAMETER num_predict 3" in smol["modelfile"]


def test_a_made_models_template_wraps_a_generate_prompt(srv):
    """Ollama's /api/generate renders the model's own Go template (with its system
    prompt); one llmkit cannot render (an Ollama chat template) leaves it to the
    model's chat template."""
    client = ollama.Client(host=srv.url)
    template = "{{ .System }} Q: {{ .Prompt }} A:"
    client.create("wrapped", from_=PLAIN, system="Sys.", template=template)
    client.create("ranged", from_=PLAIN, system="Sys.", template="{{ range .Messages }}{{ end }}")
    prompt = {"prompt": "Hi", "options": {"num_predict": 1}}
    wrapped = client.generate("wrapped", **prompt)
    asked = client.generate(PLAIN, raw=True, prompt="Sys. Q: Hi A:", options={"num_predict": 1})
    assert wrapped.prompt_eval_count == asked.prompt_eval_count
    ranged = client.generate("ranged", **prompt)
    by_hand = [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Hi"}]
    chat = client.chat(PLAIN, messages=by_hand, options={"num_predict": 1})
    assert ranged.prompt_eval_count == chat.prompt_eval_count
