"""The family table held to llama.cpp: every chat template llama.cpp ships is
detected as the family meant for it, and each family's parser turns the replies
llama.cpp's own tests write (``tests/test-chat.cpp``, read by
``llama_chat_cases``) into exactly the content, reasoning and calls llama.cpp
expects, the reply pushed whole and split at every character."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache

import pytest

from llmkit.core.tools import join_calls
from llmkit.core.types import Tool
from llmkit.engines.families import detect
from llmkit.engines.families.base import Family, Parsed
from tests.llama_chat_cases import Case, llama_cpp_dir, read_cases, render_prompt

TEMPLATES = llama_cpp_dir() / "models/templates"

# template file -> the family it is; "generic" for templates whose syntax the
# table does not model (they keep llmkit's generic format).
FAMILY = {
    "openai-gpt-oss-120b.jinja": "gpt-oss",
    "Kimi-K2-Thinking.jinja": "kimi-k2-thinking",
    "Kimi-K2-Instruct.jinja": "kimi-k2",
    "moonshotai-Kimi-K2.jinja": "kimi-k2",
    "deepseek-ai-DeepSeek-V3.1.jinja": "deepseek-v3.1",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": "deepseek-r1",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": "deepseek-r1",
    "llama-cpp-deepseek-r1.jinja": "deepseek-r1",
    "Qwen3.5-4B.jinja": "qwen3.5",
    "Qwen3-Coder.jinja": "qwen3-coder",
    "GLM-4.6.jinja": "glm-4.5",
    "GLM-4.7-Flash.jinja": "glm-4.5",
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": "magistral",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": "mistral",
    "unsloth-mistral-Devstral-Small-2507.jinja": "mistral",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral-nemo",
    "ibm-granite-granite-3.3-2B-Instruct.jinja": "granite-3.3",
    "ibm-granite-granite-4.0.jinja": "granite-4",
    "ibm-granite-granite-4.1.jinja": "granite-4",
    "fireworks-ai-llama-3-firefunction-v2.jinja": "firefunction-v2",
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama-3",
    "meta-llama-Llama-3.2-3B-Instruct.jinja": "llama-3",
    "meta-llama-Llama-3.3-70B-Instruct.jinja": "llama-3",
    "Qwen-QwQ-32B.jinja": "qwq",
    "HuggingFaceTB-SmolLM3-3B.jinja": "smollm3",
    "Qwen-Qwen3-0.6B.jinja": "qwen3",
    "Qwen-Qwen2.5-7B-Instruct.jinja": "hermes",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": "hermes",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": "hermes",
    "MiMo-VL.jinja": "hermes",
    "unsloth-Apriel-1.5.jinja": "generic",
    "Reka-Edge.jinja": "qwen3",
    "Bielik-11B-v3.0-Instruct.jinja": "qwen3",
    "inclusionai-ling-3.0-flash.jinja": "glm-4.5",
    "Spark2.5.jinja": "glm-4.5",
    "poolside-Laguna-S-2.1.jinja": "glm-4.5",
    "poolside-Laguna-XS-2.1.jinja": "glm-4.5",
    "poolside-Laguna-XS.2.jinja": "glm-4.5",
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja": "qwen3.5",
    "StepFun3.5-Flash.jinja": "qwen3.5",
    # not modelled: their own syntaxes
    "google-gemma-2-2b-it.jinja": "generic",
    "google-gemma-4-31B-it.jinja": "generic",
    "deepseek-ai-DeepSeek-V3.2.jinja": "generic",
    "meetkai-functionary-medium-v3.1.jinja": "generic",
    "meetkai-functionary-medium-v3.2.jinja": "generic",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": "generic",
    "LFM2.5-8B-A1B.jinja": "generic",
    "ByteDance-Seed-OSS.jinja": "generic",
    "MiniMax-M2.jinja": "generic",
    "MiniMax-M3.jinja": "generic",
    "NVIDIA-Nemotron-Nano-v2.jinja": "generic",
    "microsoft-Phi-3.5-mini-instruct.jinja": "generic",
    "Kimi-K3.jinja": "generic",
}

# The least number of llama.cpp cases each family must take: a reader that
# breaks (and takes nothing) fails here rather than passing on nothing.
FLOOR = {
    "gpt-oss": 10, "kimi-k2-thinking": 10, "kimi-k2": 4, "deepseek-v3.1": 4,
    "deepseek-r1": 6, "qwen3.5": 30, "qwen3-coder": 20, "glm-4.5": 25, "magistral": 4,
    "mistral": 5, "mistral-nemo": 1, "granite-3.3": 1, "granite-4": 4, "firefunction-v2": 1,
    "llama-3": 3, "qwq": 2, "hermes": 6, "qwen3": 14,
}  # fmt: skip


LING_CALL = (
    "<tool_call>get_time\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"
)
# Cases where llmkit parts from llama.cpp on purpose, by the start of their input.
DIFFER = {
    # an end-of-turn token is a stop token: the engine never hands it to a parser
    "Here is the answer.<|role_end|>": "stop token in the text",
    LING_CALL + "<|role_end|>": "stop token in the text",
    # a call repeated word for word ends the reply (what small models do until
    # max_tokens); llama.cpp hands on both
    "</think>\n" + LING_CALL + "\n" + LING_CALL: "repeated call",
}


def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def prompt(name: str, family: Family, think: bool) -> str:
    """The generation prompt llama.cpp's test renders: a user's message, thinking
    switched as the case asks."""
    return render_prompt(template(name), family.template_variables(think, None))


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_detection(name):
    assert detect(template(name), {}).name == FAMILY[name]


def test_every_template_is_named():
    """A template llama.cpp adds is either named here or detected as generic."""
    for path in TEMPLATES.glob("*.jinja"):
        found = detect(path.read_text(), {}).name
        assert FAMILY.get(path.name, "generic") == found, path.name


def test_unknown_template_and_metadata():
    assert detect("{{ messages }}", {}).name == "generic"
    # Phi-4-mini's template (not among llama.cpp's) puts the tools between these
    phi = "{{ '<|system|>' + m.content + '<|tool|>' + m.tools + '<|/tool|>' + '<|end|>' }}"
    assert detect(phi, {}).name == "phi-4-mini"
    assert detect("", {"general.architecture": "gpt-oss"}).name == "gpt-oss"
    assert detect("", {"general.architecture": "llama"}).name == "generic"


# -- the cases -----------------------------------------------------------------


def run(
    family: Family, thinking: bool, pieces: list[str], tools: tuple[Tool, ...] = ()
) -> tuple[str, str, list]:
    p = family.parser(thinking=thinking, max_calls=None, tools=tools)
    out = Parsed()
    for piece in pieces:
        out += p.push(piece)
    out += p.flush()
    calls = [(c.name, json.loads(c.arguments_json)) for c in join_calls(out.calls)]
    return out.content.strip(), out.reasoning.strip(), calls


def taken(case: Case, family: Family, opened: bool) -> str | None:
    """Why a case is left out, or None: llama.cpp's reasoning format NONE keeps
    the thinking in the content, which llmkit never does."""
    for start, why in DIFFER.items():
        if case.input.startswith(start):
            return why
    if case.reasoning_format != "NONE":
        return None
    think = getattr(family, "think", None)
    marks = [m for m in think or () if m] + ["<|channel|>analysis"]
    if opened or any(m in case.input for m in marks) or case.reasoning:
        return "reasoning format NONE"
    return None


@cache
def _cases() -> tuple[list[tuple[Case, str]], Counter]:
    cases, _ = read_cases()
    out, skipped = [], Counter()
    for case in cases:
        name = FAMILY.get(case.template, "generic")
        if name == "generic":
            continue
        family = detect(template(case.template), {})
        opened = family.thinks and family.opens_thinking(
            prompt(case.template, family, case.enable_thinking)
        )
        why = taken(case, family, opened)
        if why:
            skipped[why] += 1
        else:
            out.append((case, opened))
    return out, skipped


def _ids() -> list[str]:
    return [f"{c.template.removesuffix('.jinja')}:{c.line}" for c, _ in _cases()[0]]


def test_cases_left_out_are_only_those_named():
    """Each difference from llama.cpp named above is used (and no other appears)."""
    skipped = _cases()[1]
    assert skipped == Counter({"reasoning format NONE": 5, "stop token in the text": 2,
                               "repeated call": 1})  # fmt: skip


def test_each_family_takes_its_floor_of_cases():
    got = Counter(FAMILY[c.template] for c, _ in _cases()[0])
    short = {f: (got[f], n) for f, n in FLOOR.items() if got[f] < n}
    assert not short, f"cases taken (got, floor): {short}"


@pytest.mark.parametrize(("case", "opened"), _cases()[0], ids=_ids())
def test_llama_cpp_case(case: Case, opened: bool):
    family = detect(template(case.template), {})
    want = (
        case.content.strip(),
        case.reasoning.strip(),
        [(n, json.loads(a or "{}")) for n, a in case.calls],
    )
    tools = tuple(Tool(name, "", params) for name, params in case.tools or ())
    assert run(family, opened, [case.input], tools) == want, "whole"
    for i in range(1, len(case.input)):
        got = run(family, opened, [case.input[:i], case.input[i:]], tools)
        assert got == want, f"split at {i}: {case.input[:i]!r} | {case.input[i:]!r}"
    assert run(family, opened, list(case.input), tools) == want, "a character at a time"
