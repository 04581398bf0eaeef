"""End to end on real decoding, every family at once: one ``llmkit serve``
serving the bundled weights under each family's real chat template
(``family_models``), driven by the real clients of all four dialects.

- A forced call (a named ``tool_choice``, greedy) comes back from every family
  as exactly that one call, in the family's own syntax read back by its parser:
  arguments that hold to the schema, ``tool_calls`` / ``tool_use``, no markup
  left in the content. The prompt the server counted is the family's own
  template rendered by jinja as transformers does (its token count, through the
  server's ``/tokenize``), so each family's template really was the one used
  (a template that cannot list tools, R1-distill's, is told them in llmkit's
  generic words, as the engine does).
- A template that opens ``<think>`` itself (R1-distill) gives reasoning apart
  from the answer in all four dialects, whole and streamed, the same in each,
  no think markers in either.
- A thinking budget (the served model's ``reasoning_budget``) closes the
  thinking after exactly that many tokens and an answer follows.
- Anthropic's dialect leaves the thinking out where the request does not ask
  for it (the usage still counts it).
- Qwen3 with thinking switched off in each dialect's words renders the
  template's no-think form and answers with no thinking.

The 135M model knows none of these syntaxes: the grammar writes each family's
call, the parser reads it back, so what is checked is the machinery's, never
what the model chose to say.
"""

from __future__ import annotations

import json
from functools import cache

import anthropic
import gguf
import httpx
import jsonschema
import ollama
import pytest

from llmkit.engines.families import detect
from llmkit.engines.tool_prompt import SYSTEM_TOOLS, template_knows_tools
from tests.conftest import Server, start_server
from tests.family_models import FamilyModels, template
from tests.llama_chat_cases import _env

# family (a row of the table) -> the llama.cpp template that is it. Not here:
# phi-4-mini (no template in llama.cpp's set) and firefunction-v2 (its template
# wants a ``functions`` variable llmkit does not pass: every request is a 400).
FAMILIES = {
    "gpt-oss": "openai-gpt-oss-120b",
    "hermes": "Qwen-Qwen2.5-7B-Instruct",
    "qwen3": "Qwen-Qwen3-0.6B",
    "qwq": "Qwen-QwQ-32B",
    "qwen3-coder": "Qwen3-Coder",
    "qwen3.5": "Qwen3.5-4B",
    "llama-3": "meta-llama-Llama-3.1-8B-Instruct",
    "mistral": "Mistral-Small-3.2-24B-Instruct-2506",
    "mistral-nemo": "mistralai-Mistral-Nemo-Instruct-2407",
    "magistral": "mistralai-Ministral-3-14B-Reasoning-2512",
    "deepseek-r1": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-v3.1": "deepseek-ai-DeepSeek-V3.1",
    "granite-3.3": "ibm-granite-granite-3.3-2B-Instruct",
    "granite-4": "ibm-granite-granite-4.0",
    "glm-4.5": "GLM-4.6",
    "kimi-k2": "Kimi-K2-Instruct",
    "kimi-k2-thinking": "Kimi-K2-Thinking",
}
BUDGET = 6  # every thinking family closes its thinking after this many tokens
R1_BUDGET = 8
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "object",
    "properties": {
        # bounded by an enum: Ollama's client keeps no maxLength
        "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WHAT = "The weather in a city."
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": WHAT, "parameters": WEATHER},
}
CALL_TOKENS = 160
GREEDY = {"temperature": 0}  # Anthropic's SDK has no temperature argument
# Ollama's own defaults add a repeat penalty (1.1): off, so every dialect decodes alike
OLLAMA_GREEDY = {"temperature": 0, "repeat_penalty": 1.0}
MARKERS = ("<think>", "</think>", "[THINK]", "[/THINK]", "<|channel|>")


@pytest.fixture(scope="module")
def served(family_models: FamilyModels, tmp_path_factory: pytest.TempPathFactory) -> Server:
    tmp = tmp_path_factory.mktemp("families")
    models = family_models
    entries = [
        f"  - model: {models.path(t)}\n    served_model_name: [{name}]"
        for name, t in FAMILIES.items()
    ]
    entries.append(
        f"  - model: {models.path(FAMILIES['deepseek-r1'])}\n"
        f"    served_model_name: [r1-budget]\n    reasoning_budget: {R1_BUDGET}"
    )
    config = tmp / "models.yaml"
    config.write_text(
        f"parallel: 1\nmax_model_len: 2048\nreasoning_budget: {BUDGET}\nmodels:\n"
        + "\n".join(entries)
        + "\n"
    )
    s = start_server(tmp, "--config", str(config), "--log-requests")
    yield s
    s.stop()


@cache
def _bos(url: str) -> str:
    from llmkit.models.bundled import bundled_model_path

    reader = gguf.GGUFReader(bundled_model_path())
    bos = reader.fields["tokenizer.ggml.bos_token_id"].contents()
    return reader.fields["tokenizer.ggml.tokens"].contents()[bos]


def bos_token(s: Server) -> str:
    """The weights' BOS token as text, as the server hands it to templates."""
    return _bos(s.url)


def prompt_tokens(s: Server, family: str, tools: list | None, think: bool | None) -> int:
    """The token count of the family's template rendered by jinja as transformers
    renders it (tools in OpenAI's form, the family's thinking switch), counted by
    the server's tokenizer. A forced call not asking for thinking switches it off
    where the family can (the engine's rule)."""
    text = template(FAMILIES[family])
    row = detect(text, {})
    messages, forced = ASK, bool(tools)

    def render(think: bool | None) -> str:
        return (
            _env()
            .from_string(text)
            .render(
                messages=messages,
                tools=tools,
                add_generation_prompt=True,
                bos_token=bos_token(s),
                eos_token="",
                **row.template_variables(think, None),
            )
        )

    if tools and not template_knows_tools(text):
        # a template that cannot render tools (R1-distill's) is told them in
        # llmkit's generic words, in a system message of its own
        listed = "\n".join(json.dumps(t) for t in tools)
        messages = [{"role": "system", "content": SYSTEM_TOOLS.format(tools=listed)}, *ASK]
        tools = None
    prompt = render(think)
    if forced and think is None and row.thinking_optional:
        off = render(False)
        prompt = prompt if row.opens_thinking(off) else off
    r = httpx.post(s.url + "/tokenize", json={"model": family, "prompt": prompt})
    return r.json()["count"]


def _check_args(arguments: str | dict) -> None:
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    jsonschema.validate(args, WEATHER)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_forced_call_in_each_familys_syntax_through_every_dialect(served, family):
    assert detect(template(FAMILIES[family]), {}).name == family
    named = {"type": "function", "function": {"name": "get_weather"}}
    oai = served.client()
    r = oai.chat.completions.create(
        model=family, messages=ASK, tools=[TOOL], tool_choice=named, temperature=0,
        max_tokens=CALL_TOKENS,
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    _check_args(call.function.arguments)
    assert not choice.message.content
    assert r.usage.prompt_tokens == prompt_tokens(served, family, [TOOL], None)

    resp = oai.responses.create(
        model=family, input=ASK, temperature=0, max_output_tokens=CALL_TOKENS,
        tools=[{"type": "function", "name": "get_weather", "description": WHAT,
                "parameters": WEATHER}],
        tool_choice={"type": "function", "name": "get_weather"},
    )  # fmt: skip
    calls = [o for o in resp.output if o.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"]
    assert not [o for o in resp.output if o.type == "message"]
    assert json.loads(calls[0].arguments) == json.loads(call.function.arguments)

    claude = anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0)
    msg = claude.messages.create(
        model=family, messages=ASK, max_tokens=CALL_TOKENS, extra_body=GREEDY,
        tools=[{"name": "get_weather", "description": WHAT, "input_schema": WEATHER}],
        tool_choice={"type": "tool", "name": "get_weather"},
    )  # fmt: skip
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["tool_use"]
    assert msg.content[0].name == "get_weather"
    assert msg.content[0].input == json.loads(call.function.arguments)

    olla = ollama.Client(host=served.url)
    o = olla.chat(
        model=family, messages=ASK, tools=[TOOL],
        options={**OLLAMA_GREEDY, "num_predict": CALL_TOKENS, "tool_choice": named},
    )  # fmt: skip
    [ocall] = o.message.tool_calls
    assert ocall.function.name == "get_weather"
    # Ollama's client rewrites the tools it sends (keys dropped and reordered), so
    # its prompt is not the others': the call holds to the schema
    _check_args(dict(ocall.function.arguments))
    assert not o.message.content and o.done_reason == "stop"


def _clean(text: str) -> bool:
    return not any(m in text for m in MARKERS)


R1_ASK = [{"role": "user", "content": "What is 2+2?"}]
R1_TOKENS = 24


def test_r1_distill_thinks_apart_from_its_answer_in_every_dialect_whole_and_streamed(served):
    """R1-distill's template opens ``<think>`` itself; the served budget closes it
    after ``BUDGET`` tokens. Every dialect, whole and streamed, hands the same
    thinking and answer apart (greedy: one decoding), no marker in either."""
    oai = served.client()
    kw = {"model": "deepseek-r1", "temperature": 0}
    r = oai.chat.completions.create(messages=R1_ASK, max_tokens=R1_TOKENS, **kw)
    msg = r.choices[0].message
    thinking, answer = msg.reasoning_content, msg.content or ""
    assert thinking and _clean(thinking) and _clean(answer)
    assert r.usage.completion_tokens_details.reasoning_tokens == BUDGET
    parts = list(
        oai.chat.completions.create(messages=R1_ASK, max_tokens=R1_TOKENS, stream=True, **kw)
    )
    deltas = [p.choices[0].delta for p in parts if p.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == thinking
    assert "".join(d.content or "" for d in deltas) == answer

    resp = oai.responses.create(input=R1_ASK, max_output_tokens=R1_TOKENS, **kw)
    assert [o.type for o in resp.output][:1] == ["reasoning"]
    assert resp.output[0].content[0].text == thinking and resp.output_text == answer
    assert resp.usage.output_tokens_details.reasoning_tokens == BUDGET
    with oai.responses.stream(input=R1_ASK, max_output_tokens=R1_TOKENS, **kw) as stream:
        events = list(stream)
        final = stream.get_final_response()
    said = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert said == thinking and final.output_text == answer

    claude = anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0)
    think = {"thinking": {"type": "adaptive"}}
    kw = {"model": "deepseek-r1", "extra_body": GREEDY}  # the SDK takes no temperature
    m = claude.messages.create(messages=R1_ASK, max_tokens=R1_TOKENS, **think, **kw)
    assert m.content[0].type == "thinking" and m.content[0].thinking == thinking
    assert "".join(b.text for b in m.content if b.type == "text") == answer
    with claude.messages.stream(messages=R1_ASK, max_tokens=R1_TOKENS, **think, **kw) as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert "".join(d.thinking for d in deltas if d.type == "thinking_delta") == thinking
    assert "".join(d.text for d in deltas if d.type == "text_delta") == answer

    olla = ollama.Client(host=served.url)
    opts = {**OLLAMA_GREEDY, "num_predict": R1_TOKENS}
    o = olla.chat(model="deepseek-r1", messages=R1_ASK, think=True, options=opts)
    assert (o.message.thinking, o.message.content) == (thinking, answer)
    lines = list(
        olla.chat(model="deepseek-r1", messages=R1_ASK, think=True, options=opts, stream=True)
    )
    assert "".join(x.message.thinking or "" for x in lines) == thinking
    assert "".join(x.message.content for x in lines) == answer


def test_a_budget_closes_the_thinking_and_an_answer_follows(served):
    """The served model's budget: exactly that many thinking tokens, then the
    answer (the end-of-sequence ignored, so the reply runs to max_tokens and only
    the budget can have closed the thinking)."""
    r = served.client().chat.completions.create(
        model="r1-budget", messages=R1_ASK, max_tokens=R1_TOKENS, temperature=0,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    msg = r.choices[0].message
    assert r.usage.completion_tokens_details.reasoning_tokens == R1_BUDGET
    assert msg.reasoning_content and msg.content and r.choices[0].finish_reason == "length"
    assert _clean(msg.reasoning_content) and _clean(msg.content)


def test_anthropic_without_thinking_asked_leaves_the_thinking_out(served):
    """Anthropic sends thinking blocks only when thinking is on: a request without
    ``thinking`` gets the answer alone, its usage still counting every token."""
    claude = anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0)
    kw = {"model": "deepseek-r1", "messages": R1_ASK, "max_tokens": R1_TOKENS, "extra_body": GREEDY}
    shown = claude.messages.create(thinking={"type": "adaptive"}, **kw)
    plain = claude.messages.create(**kw)
    assert [b.type for b in plain.content] == [
        b.type for b in shown.content if b.type != "thinking"
    ]
    assert [b.text for b in plain.content] == [b.text for b in shown.content if b.type == "text"]
    assert plain.usage.output_tokens == shown.usage.output_tokens
    with claude.messages.stream(**kw) as stream:
        events = list(stream)
    blocks = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert "thinking" not in blocks
    assert not [
        e for e in events if e.type == "content_block_delta" and e.delta.type != "text_delta"
    ]


def test_qwen3_thinking_off_in_every_dialect_is_the_no_think_prompt(served):
    """Qwen3 with thinking switched off in each dialect's words: the template's
    no-think form (``enable_thinking`` false) is the prompt, and no thinking
    comes back."""
    off = prompt_tokens(served, "qwen3", None, False)
    assert off != prompt_tokens(served, "qwen3", None, True)
    kw = {"model": "qwen3", "temperature": 0}
    oai = served.client()
    r = oai.chat.completions.create(messages=ASK, max_tokens=8, reasoning_effort="none", **kw)
    assert r.usage.prompt_tokens == off
    assert getattr(r.choices[0].message, "reasoning_content", None) is None
    resp = oai.responses.create(input=ASK, max_output_tokens=16, reasoning={"effort": "none"}, **kw)
    assert [o.type for o in resp.output] == ["message"] and resp.usage.input_tokens == off
    claude = anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0)
    m = claude.messages.create(
        model="qwen3", messages=ASK, max_tokens=8, thinking={"type": "disabled"}, extra_body=GREEDY
    )
    assert [b.type for b in m.content] == ["text"] and m.usage.input_tokens == off
    o = ollama.Client(host=served.url).chat(
        model="qwen3", messages=ASK, think=False, options={**OLLAMA_GREEDY, "num_predict": 8}
    )
    assert o.message.thinking is None and o.prompt_eval_count == off
