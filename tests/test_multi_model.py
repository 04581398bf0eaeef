"""Several models in one ``llmkit serve``: from a config file (different settings
per model, engines side by side, a model loaded on first use and unloaded when
idle) and from ``--model`` repeated; each answers under its own name, and the
listings show them all. Config mistakes are refused with what to fix. The
registry's bookkeeping (load on use, never unload under a request) is also
checked in-process with a scripted engine, as a fast complement."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import ollama
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.config.settings import load_serve_settings
from llmkit.core.durations import parse_keep_alive
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Usage
from llmkit.engines.base import Engine
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.engines.spec import load_specs
from llmkit.env import Environment
from llmkit.serving.build import model_entries
from tests.conftest import Server, start_server, until

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def multi(server: Server, bundled_path: str, tmp_path_factory: pytest.TempPathFactory) -> Server:
    tmp = tmp_path_factory.mktemp("multi")
    config = tmp / "models.yaml"
    config.write_text(
        f"""
# server-wide: defaults for every model that takes them
parallel: 1
max_model_len: 1024
models:
  - model: {bundled_path}
    served_model_name: [alpha]
  - model: SmolLM2-135M-Instruct
    served_model_name: [beta, b]
    max_model_len: 512
    load: first-use
    keep_alive: 3s
  - engine: upstream
    upstream: {server.url}
    model: smol
    served_model_name: [remote]
"""
    )
    s = start_server(tmp, "--config", str(config))
    yield s
    s.stop()


def ps(s: Server) -> dict[str, str]:
    """The loaded models by served name (Ollama lists an untagged one as name:latest)."""
    running = httpx.get(s.url + "/api/ps").json()["models"]
    return {m["name"].removesuffix(":latest"): m["expires_at"] for m in running}


def test_listings_show_every_model(multi):
    cards = {m.id: m.model_extra["max_model_len"] for m in multi.client().models.list().data}
    assert cards == {"alpha": 1024, "beta": 512, "b": 512, "remote": 8192}
    tags = [m.model for m in ollama.Client(host=multi.url).list().models]
    assert tags == ["alpha:latest", "beta:latest", "b:latest", "remote:latest"]
    assert "serving beta (also as b) on llama.cpp" in multi.log()
    assert "loads when used" in multi.log()


def test_requests_route_by_model_name(multi):
    client = multi.client()
    for name in ("alpha", "beta", "remote"):
        r = client.chat.completions.create(model=name, messages=HI, max_tokens=4, temperature=0)
        assert r.model == name and r.usage.completion_tokens == 4
    # Each has its own context: 700 tokens fit alpha's 1024, not beta's 512.
    long = [{"role": "user", "content": "word " * 600}]
    assert client.chat.completions.create(model="alpha", messages=long, max_tokens=4)
    r = httpx.post(multi.v1 + "/chat/completions", json={"model": "b", "messages": long})
    assert r.status_code == 400 and "maximum context length is 512 tokens" in r.text
    r = httpx.post(multi.v1 + "/chat/completions", json={"model": "gamma", "messages": HI})
    assert r.status_code == 404 and "alpha, beta, b, remote" in r.text


def test_first_use_load_and_idle_unload(multi):
    # beta loads on its first request and is unloaded 3s after its last one.
    until(lambda: "beta" not in ps(multi), 30, "beta to be unloaded")
    health = {m["name"]: m["loaded"] for m in httpx.get(multi.url + "/health").json()["models"]}
    assert health["alpha"] and not health["beta"]
    o = ollama.Client(host=multi.url)
    first = o.generate(model="beta", prompt="Hi", options={"num_predict": 2})
    again = o.generate(model="beta", prompt="Hi", options={"num_predict": 2})
    idle_since = time.monotonic()
    # Ollama's load_duration: the time this request waited for the model to load.
    assert first.load_duration > 0 and again.load_duration == 0
    assert first.total_duration >= first.load_duration + first.prompt_eval_duration
    loaded = ps(multi)
    assert {"alpha", "beta", "b", "remote"} <= set(loaded)
    assert loaded["beta"] < loaded["alpha"]  # beta expires in seconds, alpha never
    until(lambda: "beta" not in ps(multi), 30, "beta to be unloaded after 3s idle")
    assert time.monotonic() - idle_since > 2.5  # not before its keep_alive
    assert "unloaded beta (idle; keep_alive 3s)" in multi.log()


def test_keep_alive_of_a_request_unloads_and_loads(multi):
    o = ollama.Client(host=multi.url)
    r = o.generate(model="alpha", prompt="", keep_alive=0)  # empty prompt: unload now
    assert r.done_reason == "unload"
    assert "alpha" not in ps(multi)
    # A request with keep_alive 0 loads the model, answers, and unloads it again.
    r = o.generate(model="alpha", prompt="Hi", options={"num_predict": 2}, keep_alive=0)
    assert r.eval_count == 2
    until(lambda: "alpha" not in ps(multi), 30, "alpha to be unloaded after its request")
    r = o.generate(model="alpha", prompt="", keep_alive=-1)  # load and keep for good
    assert r.done_reason == "load" and "alpha" in ps(multi)
    r = httpx.post(multi.url + "/api/generate", json={"model": "alpha", "keep_alive": "soon"})
    assert r.status_code == 400 and "keep_alive" in r.json()["error"]


def test_model_repeated_serves_each_under_its_own_name(tmp_path, bundled_path):
    (tmp_path / "tiny.gguf").symlink_to(bundled_path)
    s = start_server(
        tmp_path,
        "--model", "SmolLM2-135M-Instruct",
        "--model", str(tmp_path / "tiny.gguf"),
        "--max-model-len", "512", "--parallel", "1",
    )  # fmt: skip
    try:
        client = s.client()
        assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct", "tiny"]
        for name in ("SmolLM2-135M-Instruct", "tiny"):
            r = client.chat.completions.create(model=name, messages=HI, max_tokens=2)
            assert r.model == name
        assert set(ps(s)) == {"SmolLM2-135M-Instruct", "tiny"}
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        ("models:\n  - model: a\n    bogus: 1\n", [], "model 1: bogus: unknown setting"),
        ("colour: red\n", [], "unknown setting(s) colour; the file takes"),
        ("models: [\n", [], "is not valid YAML"),
        ("models:\n  - model: a\n    engine: upstream\n", [],
         "model 1: the upstream engine needs upstream (it takes: upstream, upstream_api_key, "
         "upstream_timeout)"),
        ("models:\n  - model: SmolLM2-135M-Instruct\n    device: cuda\n", [],
         "model 1: device does not apply to the llamacpp engine"),
        ("models:\n  - model: SmolLM2-135M-Instruct\n  - model: SmolLM2-135M-Instruct\n", [],
         "served model name(s) already in use: SmolLM2-135M-Instruct"),
        ("models:\n  - model: a\n", ["--model", "b"], "Models come from"),
        (None, ["--model", "a", "--model", "b", "--served-model-name", "x"],
         "--served-model-name names one model"),
        (None, ["--engine", "upstream"], "the upstream engine needs --upstream"),
        (None, ["--keep-alive", "soon"], "keep_alive 'soon' is not a duration"),
    ],
)  # fmt: skip
def test_config_mistakes_are_refused_with_what_to_fix(tmp_path, config, args, message):
    if config is not None:
        (tmp_path / "m.yaml").write_text(config)
        args = ["--config", str(tmp_path / "m.yaml"), *args]
    r = CliRunner().invoke(cli, ["serve", *args], env={"LLMKIT_HOME": str(tmp_path)})
    assert r.exit_code != 0
    assert message in r.output, r.output
    assert "Traceback" not in r.output


def test_the_docs_config_example_reads_as_documented(tmp_path):
    page = Path(__file__).resolve().parent.parent / "docs/reference/config-file.md"
    [example] = re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S)
    (tmp_path / "models.yaml").write_text(example)
    specs = load_specs()
    flags = {"config": tmp_path / "models.yaml", "port": 9000}
    settings = load_serve_settings(flags, Environment.read({}), specs)
    assert settings.port == 9000 and settings.keep_alive == "10m"  # the flag wins; the file's
    entries = model_entries(settings, specs)
    assert [(e.model, e.engine, e.served_model_name, e.load, e.keep_alive) for e in entries] == [
        ("SmolLM2-135M-Instruct", "llamacpp", ["smol"], "startup", "10m"),
        ("Qwen/Qwen2-0.5B-Instruct", "transformers", [], "first-use", "5m"),
        ("llama3.2", "upstream", ["llama"], "startup", "10m"),
    ]
    assert entries[1].engine_options({"device", "max_model_len"}) == {"device": "cuda"}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("300", 300.0), (300, 300.0), ("2.5s", 2.5),
     ("0", 0.0), (0, 0.0), ("-1", None), (-1, None), ("-1m", None), (None, None)],
)  # fmt: skip
def test_keep_alive_durations_read_as_ollama_reads_them(value, seconds):
    assert parse_keep_alive(value) == seconds


class ScriptedEngine(Engine):
    """A stand-in engine for the registry's bookkeeping: each generation yields
    ``steps`` chunks, one per ``release`` of the gate; start/close are counted."""

    def __init__(self) -> None:
        self.starts = self.closes = 0
        self.gate = asyncio.Semaphore(0)

    async def start(self) -> None:
        self.starts += 1

    async def close(self) -> None:
        self.closes += 1

    async def generate(self, req):  # type: ignore[no-untyped-def, override]
        for _ in range(2):
            await self.gate.acquire()
            yield Chunk(text="x")
        yield Chunk(finish_reason="stop", usage=Usage(1, 2))

    async def tokenize(self, text, *, special=True):  # type: ignore[no-untyped-def]
        return [1]

    async def detokenize(self, ids):  # type: ignore[no-untyped-def]
        return "x"

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(engine="scripted", model="m", context_length=8)


def test_a_model_is_loaded_on_use_and_never_unloaded_under_a_request():
    async def run() -> None:
        inner = ScriptedEngine()
        served = ServedModel(["m"], inner, keep_alive=0, preload=False)
        registry = ModelRegistry([served])
        await registry.start()
        assert inner.starts == 0 and not served.loaded  # load: first-use
        req = GenerateRequest(prompt="hi")
        gen = served.engine.generate(req)
        inner.gate.release()
        assert (await anext(gen)).text == "x"
        assert served.loaded and inner.starts == 1
        assert not await served.unload()  # busy: refused
        assert await served.keep(0) and inner.closes == 0  # a keep_alive 0 waits too
        inner.gate.release()
        assert [c.finish_reason async for c in gen] == [None, "stop"]
        for _ in range(1000):  # keep_alive 0: unloaded once the request ended
            if not served.loaded:
                break
            await asyncio.sleep(0.01)
        assert not served.loaded and inner.closes == 1
        await served.keep(None)  # an empty Ollama prompt: load, and keep for good
        assert served.loaded and served.expires_at is None and inner.starts == 2
        await registry.close()
        assert inner.closes == 2

    asyncio.run(run())


def test_the_managed_engine_hands_an_engines_own_extras_to_it():
    inner = ScriptedEngine()
    served = ServedModel(["m"], inner, preload=False)
    assert served.engine.gate is inner.gate  # not forwarded by hand: looked up on the engine
    assert served.engine.load() == (0, 0) and served.engine.finish_all() == 0  # not loaded
    with pytest.raises(AttributeError):
        served.engine.no_such_thing  # noqa: B018
