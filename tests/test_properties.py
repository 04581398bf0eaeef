"""Property tests (hypothesis) of what takes arbitrary user input: request parsing
in both dialects, chat templating, and the memory strategies.

- parsing: any JSON body either becomes a core request or a 4xx-class llmkit
  error / validation error, never anything else;
- templating: whatever the messages hold (template syntax, markup, any Unicode),
  the rendered prompt carries each one verbatim, in order;
- memory: whatever the history and budget, the selection starts with the system
  prompt, ends with the new message, keeps whole exchanges in order, and fits.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmkit.api.ollama import convert as ollama_convert
from llmkit.api.ollama import schemas as ollama_schemas
from llmkit.api.openai import convert as openai_convert
from llmkit.api.openai import schemas as openai_schemas
from llmkit.core.types import GenerateRequest, Message
from llmkit.engines.chat_template import CHATML, render_chat
from llmkit.errors import ClientError
from llmkit.memory import strategies as strat

RUNS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "other"])
message = st.fixed_dictionaries(
    {"role": roles},
    optional={"content": st.text(max_size=40) | json_values, "name": st.text(max_size=5)},
)
chat_body = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": st.lists(message, max_size=4) | json_values},
    optional={
        "temperature": json_values, "top_p": json_values, "max_tokens": json_values,
        "stop": json_values, "seed": json_values, "n": json_values, "logit_bias": json_values,
        "response_format": json_values, "top_k": json_values, "options": json_values,
        "format": json_values, "stream": json_values, "logprobs": json_values,
    },
)  # fmt: skip


@RUNS
@given(chat_body)
def test_openai_chat_bodies_parse_or_fail_as_the_clients_fault(body):
    try:
        req = openai_schemas.ChatCompletionRequest.model_validate(body)
        out = openai_convert.from_chat_request(req)
    except (ValidationError, ClientError):
        return
    assert isinstance(out, GenerateRequest) and out.messages


@RUNS
@given(chat_body)
def test_ollama_chat_bodies_parse_or_fail_as_the_clients_fault(body):
    try:
        req = ollama_schemas.ChatRequest.model_validate(body)
        out = ollama_convert.from_chat_request(req)
    except (ValidationError, ClientError):
        return
    assert isinstance(out, GenerateRequest)


contents = st.text(max_size=60) | st.sampled_from(
    ["{{ messages }}", "{% for x in range(9999999) %}", "<|im_end|>", "<script>x</script>", "\x00"]
)


turns = st.tuples(st.sampled_from(["system", "user", "assistant"]), contents)


@RUNS
@given(st.lists(turns, min_size=1, max_size=6))
def test_the_chat_template_carries_every_message_verbatim_in_order(pairs):
    msgs = tuple(Message(r, c) for r, c in pairs)  # type: ignore[arg-type]
    text = render_chat(CHATML, msgs)
    at = 0
    for m in msgs:
        found = text.find(m.content, at)
        assert found >= 0, m
        at = found + len(m.content)


def history_of(n: int, words: list[str]) -> list[Message]:
    out = []
    for i in range(n):
        out.append(Message("user", f"q{i} " + " ".join(words)))
        out.append(Message("assistant", f"a{i} " + " ".join(reversed(words))))
    out.append(Message("user", "the new question"))
    return out


@RUNS
@given(
    n=st.integers(0, 30),
    words=st.lists(st.text(alphabet="abcdefgh xyz", min_size=1, max_size=8), max_size=12),
    budget=st.integers(20, 2000),
    kind=st.sampled_from(["buffer", "window:3", "tokens", "summary:2"]),
    system=st.none() | st.text(alphabet="abc ", max_size=30),
)
def test_every_strategy_keeps_system_first_new_last_whole_exchanges_and_fits(
    n, words, budget, kind, system
):
    history = history_of(n, words)
    try:
        chosen = strat.select_messages(
            strat.parse_strategy(kind), system=system, history=history, budget=budget
        )
    except ClientError:  # the system prompt and new message alone do not fit
        assert strat.estimate_tokens([Message("system", system or ""), history[-1]]) > 0
        return
    assert strat.estimate_tokens(chosen) <= budget
    assert chosen[-1] == history[-1]
    if system:
        assert chosen[0].role == "system" and system in chosen[0].content
    body = [m for m in chosen[:-1] if m.role != "system"]
    assert len(body) % 2 == 0 and all(  # whole exchanges, in the history's order
        body[i].role == "user" and body[i + 1].role == "assistant" for i in range(0, len(body), 2)
    )
    positions = [history.index(m) for m in body]
    assert positions == sorted(positions)
