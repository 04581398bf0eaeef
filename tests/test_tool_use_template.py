"""A GGUF's second chat template, for tools (``tokenizer.chat_template.tool_use``:
Hermes 2 Pro and 3, Command-R carry one): the llama.cpp engine renders a request
that offers tools with it, one that does not with the default, as llama.cpp
does; the model's family is the one the tools template writes. Checked on the
bundled weights given Hermes 2 Pro's tools template from llama.cpp's set, the
prompts held to that template rendered by jinja as transformers renders it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import gguf
import pytest

from llmkit.core.types import GenerateRequest, Message, SamplingParams, Tool
from llmkit.engines.llamacpp.engine import TOOL_USE_TEMPLATE, LlamaCppEngine
from llmkit.engines.llamacpp.model import LoadOptions
from tests.family_models import template, with_template
from tests.llama_chat_cases import _env

HERMES = "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use"
ASK = (Message("user", "What is the weather in Paris?"),)
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = Tool("get_weather", "The weather in a city.", json.dumps(PARAMS))


@pytest.fixture(scope="module")
def default_template(bundled_path: str) -> str:
    return gguf.GGUFReader(bundled_path).fields[gguf.Keys.Tokenizer.CHAT_TEMPLATE].contents()


@pytest.fixture(scope="module")
def engine(
    bundled_path: str, default_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaCppEngine]:
    path = tmp_path_factory.mktemp("tool-use") / "hermes-2-pro.gguf"
    with_template(bundled_path, path, default_template, {TOOL_USE_TEMPLATE: template(HERMES)})
    engine = LlamaCppEngine(LoadOptions(path=str(path), n_ctx=1024, parallel=1, n_threads=2))
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


def reference(engine: LlamaCppEngine, source: str, tools: list | None) -> str:
    lm = engine.lm
    return (
        _env()
        .from_string(source)
        .render(
            messages=[{"role": "user", "content": ASK[0].content}],
            tools=tools,
            add_generation_prompt=True,
            bos_token=lm.token_text(lm.bos_id),
            eos_token=lm.token_text(lm.eos_id),
        )
    )


def test_tools_render_with_the_tools_template_and_the_rest_with_the_default(
    engine, default_template
):
    offered = [{"type": "function", "function": {"name": TOOL.name,
               "description": TOOL.description, "parameters": PARAMS}}]  # fmt: skip
    with_tools = engine.chat_text(ASK, (TOOL,), {})
    assert with_tools == reference(engine, template(HERMES), offered)
    assert "<tools>" in with_tools
    assert engine.chat_text(ASK, (), {}) == reference(engine, default_template, None)


def test_the_family_is_the_one_the_tools_template_writes_and_a_forced_call_parses(engine):
    assert engine.family.name == "hermes"  # SmolLM2's own template alone: generic

    async def call() -> list:
        req = GenerateRequest(
            messages=ASK, tools=(TOOL,), tool_choice="required", tool_name=TOOL.name,
            sampling=SamplingParams(temperature=0), max_tokens=60,
        )  # fmt: skip
        return [d async for c in engine.generate(req) for d in c.tool_calls]

    deltas = asyncio.run(call())
    assert deltas[0].name == "get_weather"
    assert set(json.loads("".join(d.arguments for d in deltas))) == {"city"}
