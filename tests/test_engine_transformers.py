"""The transformers engine on the CPU, against a real model: the bundled GGUF loaded
by transformers' own GGUF loader (dequantized to float32), with the tokenizer's
own chat template, through the real ``openai`` and ``ollama`` clients.

Greedy output against llama.cpp on the same GGUF: the prompts tokenize to the
same ids, and the replies often part after a few tokens. That is expected, not
a bug: llama.cpp multiplies the Q4_1 weights as they are stored and quantizes
the activations to 8 bits (Q8_1) for those dot products, while transformers
dequantizes the weights and computes in float32. The logits differ by about
0.1, and where a 135M model's two best next tokens are closer than that (every
parting measured here was a near tie: 0.08 to 0.13 logits apart in
transformers' own logits) greedy picks differ and the texts go their own ways.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import ollama
import pytest

from llmkit.config.file import ModelEntry
from llmkit.core.types import GenerateRequest, Message, SamplingParams
from llmkit.engines.registry import ServedModel
from llmkit.engines.spec import load_specs
from llmkit.env import Environment
from llmkit.errors import EngineError, ServerBusyError
from llmkit.serving.build import build_models
from tests.conftest import Server, start_server
from tests.tiny_models import bundled_tokenizer

MODEL = "smol-hf"
MESSAGES = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Server:
    pytest.importorskip("torch")
    # One thread: the decode thread must not fight the rest of the suite for cores.
    s = start_server(
        tmp_path_factory.mktemp("transformers"),
        "--engine", "transformers",
        "--served-model-name", MODEL,
        "--threads", "1",
        "--max-model-len", "1024",
        "--parallel", "2",
    )  # fmt: skip
    yield s
    s.stop()


def chat(s: Server, **kw: object) -> object:
    args = {"model": MODEL, "messages": MESSAGES, "max_tokens": 16, "temperature": 0, **kw}
    return s.client().chat.completions.create(**args)


def test_serves_the_gguf_through_transformers(hf):
    cards = hf.client().models.list().data
    assert [(m.id, m.model_extra["max_model_len"]) for m in cards] == [(MODEL, 1024)]
    show = ollama.Client(host=hf.url).show(MODEL)
    assert show.details.family == "llama" and show.details.format == "gguf"
    assert show.details.quantization_level == "float32"  # dequantized by transformers
    assert "<|im_start|>" in show.template  # the tokenizer's own chat template
    assert "on transformers:" in hf.log() and "device cpu, dtype float32" in hf.log()


def test_chat_streams_token_by_token_and_matches_the_whole_answer(hf):
    whole = chat(hf)
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 16
    stream = chat(hf, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 10  # one delta per token (or nearly), not one lump
    assert "".join(pieces) == whole.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stop_strings_and_seeds(hf):
    full = chat(hf, max_tokens=24).choices[0].message.content
    assert ":" in full
    cut = chat(hf, max_tokens=24, stop=[":"]).choices[0]
    assert cut.message.content == full[: full.index(":")] and cut.finish_reason == "stop"
    sampled = [
        chat(hf, temperature=1.0, seed=seed, max_tokens=12).choices[0].message.content
        for seed in (1, 1, 2)
    ]
    assert sampled[0] == sampled[1] != sampled[2]


def test_greedy_logprobs_name_the_likeliest_token_and_spell_the_reply(hf):
    r = chat(hf, logprobs=True, top_logprobs=3).choices[0]
    entries = r.logprobs.content
    assert "".join(e.token for e in entries) == r.message.content and len(entries) == 16
    for e in entries:
        top = [t.logprob for t in e.top_logprobs]
        assert e.logprob <= 0 and len(top) == 3 and top == sorted(top, reverse=True)
        assert e.logprob >= top[0] - 1e-6 and e.top_logprobs[0].token == e.token
        assert sum(math.exp(v) for v in top) <= 1 + 1e-6


def test_ollama_client_chat_and_generate_with_context(hf):
    o = ollama.Client(host=hf.url)
    greedy = {"num_predict": 16, "temperature": 0, "repeat_penalty": 1.0}  # no Ollama defaults
    reply = o.chat(model=MODEL, messages=MESSAGES, options=greedy)
    assert reply.message.content == chat(hf).choices[0].message.content
    parts = list(o.generate(model=MODEL, prompt="My name is Ada.", options={"num_predict": 8},
                            stream=True))  # fmt: skip
    assert parts[-1].done and parts[-1].eval_count == 8 and parts[-1].context
    follow = o.generate(model=MODEL, prompt="What is my name?", context=parts[-1].context,
                        options={"num_predict": 8, "temperature": 0})  # fmt: skip
    assert follow.prompt_eval_count > len(parts[-1].context)


def test_concurrent_streams_take_turns_and_match_their_solo_answers(hf):
    prompts = ["Name three colours.", "Count from 1 to 5."]
    solo = [
        chat(hf, messages=[{"role": "user", "content": p}]).choices[0].message.content
        for p in prompts
    ]
    together: list[str] = ["", ""]

    def run(i: int) -> None:
        stream = chat(hf, messages=[{"role": "user", "content": prompts[i]}], stream=True)
        together[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert together == solo
    assert httpx.get(hf.url + "/health").json()["models"][0]["running"] == 0


def test_refusals_are_clean_400s(hf):
    r = httpx.post(hf.v1 + "/chat/completions",
                   json={"model": MODEL, "messages": MESSAGES, "max_tokens": 5000})  # fmt: skip
    assert r.status_code == 400 and "maximum context length is 1024 tokens" in r.text
    r = httpx.post(hf.url + "/api/chat",
                   json={"model": MODEL, "messages": MESSAGES, "format": "json"})  # fmt: skip
    assert r.status_code == 400 and "not supported by the transformers engine" in r.text


def test_tools_auto_are_parsed_and_a_forced_call_is_refused(hf):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    r = chat(hf, tools=[tool], max_tokens=24)  # auto: offered, parsed; no markup in content
    assert "<tool_call" not in (r.choices[0].message.content or "")
    body = {"model": MODEL, "messages": MESSAGES, "tools": [tool], "tool_choice": "required"}
    r = httpx.post(hf.v1 + "/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"
    assert "cannot force a tool call" in r.json()["error"]["message"]


def test_a_forced_call_on_anthropics_api_is_a_400_in_its_shape(hf):
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8, "tools": [tool],
            "tool_choice": {"type": "tool", "name": "get_weather"}}  # fmt: skip
    r = httpx.post(hf.url + "/v1/messages", json=body)
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "cannot force a tool call" in r.json()["error"]["message"]


def test_greedy_output_against_llama_cpp_on_the_same_gguf(hf, server):
    prompts = ["Count from 1 to 10.", "Name three colours.", "Hi"]
    report = []
    for p in prompts:
        msgs = [{"role": "user", "content": p}]
        ids = [
            httpx.post(s.url + "/tokenize", json={"model": name, "messages": msgs}).json()
            for s, name in ((hf, MODEL), (server, "smol"))
        ]
        assert ids[0]["tokens"] == ids[1]["tokens"]  # same tokenizer, same template
        texts = [
            s.client()
            .chat.completions.create(model=name, messages=msgs, max_tokens=32, temperature=0)
            .choices[0]
            .message.content
            for s, name in ((hf, MODEL), (server, "smol"))
        ]
        same = 0
        while same < min(map(len, texts)) and texts[0][same] == texts[1][same]:
            same += 1
        report.append(f"{p!r}: {'equal' if texts[0] == texts[1] else f'part at char {same}'}")
        if p.startswith("Count"):  # no near ties on this one: both count the same
            assert texts[0] == texts[1]
    print("\ntransformers vs llama.cpp, greedy:", "; ".join(report))


def test_missing_torch_says_how_to_install_it(tmp_path):
    # A Python where torch cannot be imported, as without the extra.
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from llmkit.cli.main import cli\n"
        "cli(['serve', '--engine', 'transformers'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"LLMKIT_HOME": str(tmp_path), "PATH": ""}, timeout=120)  # fmt: skip
    assert r.returncode == 1
    assert "pip install 'llmkit[transformers]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_refuses_what_would_not_fit_before_loading(tmp_path):
    """transformers dequantizes the GGUF to float32 on the CPU: 135M parameters x 4
    bytes. The check runs before torch loads anything."""
    env = {**os.environ, "LLMKIT_HOME": str(tmp_path), "LLMKIT_MEMORY_GIB": "0.3"}
    r = subprocess.run(
        [sys.executable, "-m", "llmkit", "serve", "--engine", "transformers"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "weights 513.13 MiB" in r.stderr and "307.20 MiB" in r.stderr


@pytest.fixture(scope="module")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The usual "from source" layout: config.json + safetensors + tokenizer files. A
    tiny random Llama written by transformers itself, with the bundled model's real
    tokenizer."""
    pytest.importorskip("torch")
    import transformers

    out = tmp_path_factory.mktemp("tiny-hf")
    tok = bundled_tokenizer()  # rebuilt from the bundled GGUF once a session
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_served(directory: Path, **options: object) -> ServedModel:
    entry = ModelEntry(
        model=str(directory), engine="transformers", options={"threads": 1, **options}
    )
    env = Environment.read({"LLMKIT_MODELS": str(directory / "none")})
    [served] = build_models(entry, load_specs(), env)
    return served


def greedy(max_tokens: int) -> GenerateRequest:
    return GenerateRequest(
        messages=(Message("user", "Hi"),),
        sampling=SamplingParams(temperature=0),
        max_tokens=max_tokens,
        ignore_eos=True,
    )


def test_a_hugging_face_directory_loads_from_source(tiny_hf_dir):
    """Run in-process through the engine factory."""
    served = tiny_served(tiny_hf_dir, max_model_len=128)
    assert served.name == tiny_hf_dir.name and served.info.format == "safetensors"

    async def run() -> list:
        await served.ensure_loaded()
        try:
            return [c async for c in served.engine.generate(greedy(5))]
        finally:
            await served.unload(force=True)

    chunks = asyncio.run(run())
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage.completion_tokens == 5
    assert served.inner.info.format == "safetensors" and served.inner.info.parameter_count > 0
    assert served.inner.info.context_length == 128  # what the fit check counted


def test_the_context_is_the_one_the_fit_check_chose(tiny_hf_dir):
    """No --max-model-len: the model's own (256 here), capped as llama.cpp caps it."""
    served = tiny_served(tiny_hf_dir)

    async def run() -> int:
        await served.ensure_loaded()
        try:
            return served.engine.context_length
        finally:
            await served.unload(force=True)

    assert asyncio.run(run()) == 256


def test_finish_all_ends_streams_with_length_and_refuses_new_work(tiny_hf_dir):
    """Shutdown on transformers is llama.cpp's: a running stream gets its final chunk
    (finish_reason "length"), and new requests are turned away as busy."""
    served = tiny_served(tiny_hf_dir, parallel=1)

    async def run() -> tuple[int, list]:
        await served.ensure_loaded()
        try:
            stream = served.engine.generate(greedy(200))
            await anext(stream)
            ended = served.engine.finish_all()
            rest = [c async for c in stream]
            with pytest.raises(ServerBusyError, match="shutting down"):
                await anext(served.engine.generate(greedy(5)))
            return ended, rest
        finally:
            await served.unload(force=True)

    ended, rest = asyncio.run(run())
    assert ended == 1
    assert rest[-1].finish_reason == "length" and rest[-1].usage.completion_tokens < 200


def test_pickle_weights_load_only_when_the_user_allows_them(tiny_hf_dir, tmp_path):
    """A repository with only .bin weights (pickles can run code) is refused with
    what to do; --allow-pickle loads it. Nothing of the model's own code ever runs."""
    import shutil

    import torch
    import transformers

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_hf_dir, pickled)
    for f in pickled.glob("*.safetensors"):
        f.unlink()
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_hf_dir)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")

    served = tiny_served(pickled)
    with pytest.raises(EngineError, match="--allow-pickle"):
        asyncio.run(served.ensure_loaded())
    allowed = tiny_served(pickled, allow_pickle=True)
    asyncio.run(allowed.ensure_loaded())
    assert allowed.loaded
    asyncio.run(allowed.unload(force=True))
