"""What the client sends, as tables: a core ``GenerateRequest`` in, the path and
body each dialect expects out (``llmkit.client.bodies``), and the URLs that name
a dialect (``llmkit.client.protocol.parse_url``). Pure functions: no server."""

from __future__ import annotations

import dataclasses
import json

import pytest

from llmkit.client.bodies import to_ollama, to_openai
from llmkit.client.protocol import parse_url
from llmkit.core.types import GenerateRequest, Message, SamplingParams
from llmkit.errors import InvalidRequestError, ModelSpecError


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("ollama://gpu-box:11434", ("http://gpu-box:11434", "ollama")),
        ("openai://127.0.0.1:8000/v1", ("http://127.0.0.1:8000", "openai")),
        ("openai+https://api.example.com/v1/", ("https://api.example.com", "openai")),
        ("http://127.0.0.1:8000/v1", ("http://127.0.0.1:8000", None)),
        ("127.0.0.1:11434", ("http://127.0.0.1:11434", None)),
    ],
)
def test_upstream_urls(url, want):
    assert parse_url(url, option="--upstream") == want


def test_a_url_of_another_kind_is_refused_naming_the_option():
    with pytest.raises(ModelSpecError) as e:
        parse_url("grpc://h:1", option="--upstream")
    assert e.value.message.startswith("--upstream grpc://h:1: use http://HOST:PORT")


def test_requests_in_each_dialect():
    req = GenerateRequest(
        messages=(Message("user", "Hi"),),
        sampling=SamplingParams(temperature=0.5, top_k=20, seed=3, response_format="json"),
        max_tokens=8,
        stop=("\n",),
    ).settled()  # as a served model hands it to the upstream engine: every value set
    assert to_openai("m", req) == (
        "/v1/chat/completions",
        {"model": "m", "stream": True, "temperature": 0.5,
         "stream_options": {"include_usage": True},
         "messages": [{"role": "user", "content": "Hi"}],
         "max_tokens": 8, "seed": 3, "stop": ["\n"], "top_k": 20,
         "response_format": {"type": "json_object"}},
    )  # fmt: skip
    assert to_ollama("m", req) == (
        "/api/chat",
        {"model": "m", "stream": True, "format": "json",
         "messages": [{"role": "user", "content": "Hi"}],
         "options": {"temperature": 0.5, "top_p": 1.0, "top_k": 20, "min_p": 0.0,
                     "repeat_penalty": 1.0, "repeat_last_n": 64, "presence_penalty": 0.0,
                     "frequency_penalty": 0.0, "seed": 3, "num_predict": 8, "stop": ["\n"]}},
    )  # fmt: skip
    raw = GenerateRequest(prompt="Once", max_tokens=2)
    assert to_openai("m", raw)[0] == "/v1/completions"
    assert to_ollama("m", raw)[1]["raw"] is True and to_ollama("m", raw)[0] == "/api/generate"
    with pytest.raises(InvalidRequestError):
        to_ollama("m", GenerateRequest(prompt=(1, 2, 3)))


def test_every_sampling_value_has_a_place_in_each_dialect():
    s = SamplingParams(
        temperature=0.1, top_p=0.9, top_k=5, min_p=0.05, seed=1, presence_penalty=0.2,
        frequency_penalty=0.3, repeat_penalty=1.1, repeat_last_n=32,
        response_format="json", json_schema='{"type": "object"}',
    )  # fmt: skip
    req = GenerateRequest(prompt=(1, 2), sampling=s, ignore_eos=True, context_limit=512)
    _, body = to_openai("m", req)
    assert body["prompt"] == [1, 2] and body["ignore_eos"] is True
    assert body["repetition_penalty"] == 1.1 and "repeat_penalty" not in body  # vLLM's name
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    _, body = to_ollama("m", GenerateRequest(prompt="x", sampling=s, context_limit=512))
    assert body["options"]["num_ctx"] == 512 and body["options"]["repeat_last_n"] == 32
    assert body["format"] == {"type": "object"}
    with pytest.raises(InvalidRequestError):
        to_ollama("m", GenerateRequest(prompt="x", sampling=SamplingParams(logit_bias=((1, 2.0),))))
    biased = SamplingParams(logit_bias=((7, -100.0),))
    assert to_openai("m", GenerateRequest(prompt="x", sampling=biased))[1]["logit_bias"] == {
        "7": -100.0
    }


def test_send_names_the_only_sampling_values_that_go():
    """What ``Chat`` does: what its user set goes, the server's defaults do the rest."""
    sampling = SamplingParams(temperature=0.8, top_k=40)
    req = GenerateRequest(messages=(Message("user", "Hi"),), sampling=sampling)
    _, body = to_openai("m", req, send=())
    assert body == {
        "model": "m", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hi"}],
    }  # fmt: skip
    assert to_openai("m", req, send=("top_k",))[1]["top_k"] == 40
    assert to_ollama("m", req, send=())[1]["options"] == {}
    assert to_ollama("m", req, send=("temperature",))[1]["options"] == {"temperature": 0.8}


def test_tools_and_tool_turns_go_out_in_each_dialect():
    from llmkit.core.types import Tool, ToolCall

    call = ToolCall(id="call_1", name="get_weather", arguments_json='{"city": "Paris"}')
    req = GenerateRequest(
        messages=(
            Message("user", "Weather?"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", '{"temp": 21}', tool_call_id="call_1"),
        ),
        tools=(Tool("get_weather", "The weather", '{"type": "object"}'),),
        tool_choice="required",
        tool_name="get_weather",
        parallel_tool_calls=False,
    )
    _, body = to_openai("m", req)
    fn = {"name": "get_weather", "parameters": {"type": "object"}, "description": "The weather"}
    assert body["tools"] == [{"type": "function", "function": fn}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert body["messages"][1]["content"] is None
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert body["messages"][2]["tool_call_id"] == "call_1"
    _, body = to_ollama("m", req)
    assert body["messages"][1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    none = dataclasses.replace(req, tool_choice="none", tool_name=None)
    assert "tools" not in to_openai("m", none)[1] and "tools" not in to_ollama("m", none)[1]


def test_streamed_calls_come_back_as_deltas_in_each_dialect():
    from llmkit.client.stream import ReplyReader
    from llmkit.core.tools import join_calls

    r = ReplyReader("openai")
    first = {"index": 0, "id": "c1", "type": "function",
             "function": {"name": "f", "arguments": ""}}  # fmt: skip
    more = {"index": 0, "function": {"arguments": '{"a": 1}'}}
    lines = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [more]}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    chunks = [c for line in lines for c in r.feed("data: " + json.dumps(line))]
    chunks += r.feed("data: [DONE]")
    [joined] = join_calls(d for c in chunks for d in c.tool_calls)
    assert (joined.id, joined.name, joined.arguments_json) == ("c1", "f", '{"a": 1}')
    assert chunks[-1].finish_reason == "tool_calls"
    o = ReplyReader("ollama")
    calls = [{"function": {"name": "f", "arguments": {"a": 1}}}]
    message = {"role": "assistant", "content": "", "tool_calls": calls}
    line = {"message": message, "done": True, "done_reason": "stop", "eval_count": 4}
    out = o.feed(json.dumps(line))
    [call] = join_calls(d for c in out for d in c.tool_calls)
    assert call.name == "f" and json.loads(call.arguments_json) == {"a": 1}
    assert out[-1].finish_reason == "tool_calls"  # Ollama says "stop" after calls


def test_logprobs_are_asked_in_each_dialects_words():
    chat = GenerateRequest(messages=(Message("user", "hi"),), logprobs=3)
    assert {k: to_openai("m", chat)[1].get(k) for k in ("logprobs", "top_logprobs")} == {
        "logprobs": True,
        "top_logprobs": 3,
    }
    completion = GenerateRequest(prompt="hi", logprobs=2)
    body = to_openai("m", completion)[1]
    assert body["logprobs"] == 2 and "top_logprobs" not in body
    for req in (chat, completion):
        body = to_ollama("m", req)[1]
        assert (body["logprobs"], body["top_logprobs"]) == (True, req.logprobs)
    plain = GenerateRequest(prompt="hi")
    assert "logprobs" not in to_openai("m", plain)[1] and "logprobs" not in to_ollama("m", plain)[1]


def test_streamed_logprobs_come_back_with_their_text_in_each_dialect():
    from llmkit.client.stream import ReplyReader

    entry = {"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
             "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}  # fmt: skip
    chat = {"choices": [{"index": 0, "delta": {"content": "Hi"},
                         "logprobs": {"content": [entry], "refusal": None}}]}  # fmt: skip
    legacy = {"choices": [{"index": 0, "text": "Hi", "logprobs": {
        "tokens": ["Hi"], "token_logprobs": [-0.5], "top_logprobs": [{"Hi": -0.5}],
        "text_offset": [0]}}]}  # fmt: skip
    ollama_line = {"response": "Hi", "done": False, "logprobs": [entry]}
    for dialect, line in (("openai", chat), ("openai", legacy), ("ollama", ollama_line)):
        raw = json.dumps(line) if dialect == "ollama" else "data: " + json.dumps(line)
        [chunk] = ReplyReader(dialect).feed(raw)
        [e] = chunk.logprobs
        assert (chunk.text, e.piece, e.logprob) == ("Hi", b"Hi", -0.5), dialect
        assert [(t.piece, t.logprob) for t in e.top] == [(b"Hi", -0.5)], dialect
