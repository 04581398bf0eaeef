"""Tool calling end to end: the real server with the bundled 135M model, driven
by the clients people use (openai, ollama, LangChain, pydantic-ai).

Forced calls (``required``, a named function) are grammar-constrained, so even
this small model's calls must parse and match their schema every time.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import ollama
import pytest
from pydantic import BaseModel

from tests.conftest import requests_sent

MODEL = "SmolLM2-135M-Instruct"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1},
    },
    "required": ["city", "unit"],
}
TIME_PARAMS = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": WEATHER_PARAMS,
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "The time", "parameters": TIME_PARAMS},
}
SCHEMAS = {"get_weather": WEATHER_PARAMS, "get_time": TIME_PARAMS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
BAD = {"type": "objekt"}


def check_calls(calls, names=("get_weather", "get_time")) -> list[dict]:
    """Every call names an offered function and its arguments validate; the arguments."""
    assert calls
    out = []
    for c in calls:
        assert c.id.startswith("call_") and c.type == "function"
        assert c.function.name in names
        args = json.loads(c.function.arguments)
        jsonschema.validate(args, SCHEMAS[c.function.name])
        out.append(args)
    return out


def stream_calls(client, **body) -> tuple[list[dict], str | None, str]:
    """A streamed reply's calls, assembled from their deltas; the finish reason; the text."""
    calls: dict[int, dict] = {}
    reason, text = None, ""
    for ev in client.chat.completions.create(stream=True, **body):
        for ch in ev.choices:
            reason = ch.finish_reason or reason
            text += ch.delta.content or ""
            for d in ch.delta.tool_calls or []:
                if d.index not in calls:
                    # The head of a call: id, type and name come before any argument.
                    assert d.id and d.type == "function" and d.function.name
                    calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
                calls[d.index]["arguments"] += d.function.arguments or ""
    return [calls[i] for i in sorted(calls)], reason, text


# -- openai -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_calls_parse_and_match_the_schema(client, choice):
    names = ("get_weather",) if isinstance(choice, dict) else ("get_weather", "get_time")
    for seed in range(4):  # sampled, not greedy: any call the model makes must hold
        r = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice,
            parallel_tool_calls=False, temperature=1.0, seed=seed, max_tokens=200,
        )  # fmt: skip
        ch = r.choices[0]
        assert ch.finish_reason == "tool_calls" and not ch.message.content
        assert len(ch.message.tool_calls) == 1
        check_calls(ch.message.tool_calls, names)


def test_forced_calls_stream_as_deltas_that_assemble(client):
    calls, reason, text = stream_calls(
        client, model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=200,
    )  # fmt: skip
    assert reason == "tool_calls" and text == ""
    for c in calls:
        assert c["name"] == "get_weather" and c["id"].startswith("call_")
        jsonschema.validate(json.loads(c["arguments"]), WEATHER_PARAMS)


def test_parallel_calls_one_or_more_and_exactly_one_without(client):
    body = {"model": MODEL, "messages": ASK, "tools": [WEATHER, TIME], "temperature": 0}
    many = client.chat.completions.create(tool_choice="required", max_tokens=200, **body)
    check_calls(many.choices[0].message.tool_calls)
    one = client.chat.completions.create(
        tool_choice="required", parallel_tool_calls=False, max_tokens=200, **body
    )
    assert len(one.choices[0].message.tool_calls) == 1
    check_calls(one.choices[0].message.tool_calls)


def test_a_named_function_is_one_call_and_the_reply_ends_there(client):
    # Parallel calls allowed (the default): naming the function still means one call,
    # and the reply ends with it rather than running on to max_tokens.
    body = {"model": MODEL, "messages": ASK, "tools": [WEATHER, TIME], "temperature": 0}
    named = {"type": "function", "function": {"name": "get_weather"}}
    r = client.chat.completions.create(tool_choice=named, max_tokens=200, **body)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and len(ch.message.tool_calls) == 1
    check_calls(ch.message.tool_calls, ("get_weather",))
    assert r.usage.completion_tokens < 200
    calls, reason, _ = stream_calls(
        client, tool_choice=named, max_tokens=200, stream_options={"include_usage": True}, **body
    )
    assert reason == "tool_calls" and [c["name"] for c in calls] == ["get_weather"]


def test_a_round_trip_ends_in_a_text_answer(client):
    first = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0,
        max_tokens=120,
    )  # fmt: skip
    msg = first.choices[0].message
    [args] = check_calls(msg.tool_calls[:1])
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [msg.tool_calls[0].model_dump()]},
        {"role": "tool", "tool_call_id": msg.tool_calls[0].id,
         "content": json.dumps({"city": args["city"], "temperature": 21, "sky": "sunny"})},
    ]  # fmt: skip
    final = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], temperature=0, max_tokens=60
    )
    ch = final.choices[0]
    assert ch.finish_reason in ("stop", "length") and ch.message.content
    assert not ch.message.tool_calls and "<tool_" not in ch.message.content
    done = client.chat.completions.create(model=MODEL, messages=history, temperature=0)
    assert done.choices[0].finish_reason == "stop" and done.choices[0].message.content


def test_none_answers_in_text(client):
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=40,
        temperature=0,
    )  # fmt: skip
    assert r.choices[0].message.content and r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason in ("stop", "length")


def test_legacy_functions_get_a_function_call(client):
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, functions=[WEATHER["function"]],
        function_call={"name": "get_weather"}, temperature=0, max_tokens=120,
    )  # fmt: skip
    ch = r.choices[0]
    assert ch.finish_reason == "function_call" and ch.message.function_call.name == "get_weather"
    jsonschema.validate(json.loads(ch.message.function_call.arguments), WEATHER_PARAMS)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": BAD}}]},
         "tools.0.function.parameters"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)  # fmt: skip
def test_tool_mistakes_are_400s_naming_the_field(server, extra, param):
    body = {"model": MODEL, "messages": ASK, **extra}
    r = httpx.post(server.v1 + "/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    o = httpx.post(server.url + "/api/chat", json={**body, "stream": False})
    assert o.status_code == 400 and isinstance(o.json()["error"], str)


# -- ollama ---------------------------------------------------------------------------


def test_ollama_forced_call_streaming_and_not(server):
    c = ollama.Client(host=server.url)
    opts = {"tool_choice": "required", "temperature": 0, "num_predict": 120}
    r = c.chat(model=MODEL, messages=ASK, tools=[WEATHER], options=opts)
    [call] = r.message.tool_calls[:1]
    assert call.function.name == "get_weather"
    jsonschema.validate(dict(call.function.arguments), WEATHER_PARAMS)
    parts = list(c.chat(model=MODEL, messages=ASK, tools=[WEATHER], options=opts, stream=True))
    calls = [tc for p in parts for tc in p.message.tool_calls or []]
    assert calls and all(tc.function.name == "get_weather" for tc in calls)
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert "".join(p.message.content for p in parts) == ""


def tokens(server, text: str) -> int:
    return httpx.post(server.url + "/tokenize", json={"model": MODEL, "prompt": text}).json()[
        "count"
    ]


def test_ollama_unforced_answers_are_clean_text(server):
    c = ollama.Client(host=server.url)
    r = c.chat(model=MODEL, messages=ASK, tools=[WEATHER], options={"num_predict": 60, "seed": 1})
    assert "<tool_call" not in r.message.content and "</tool_call" not in r.message.content
    assert r.message.content or r.message.tool_calls
    # The tools reached the prompt: it is longer than the question alone by at least
    # the tool's name, description and parameter names.
    bare = c.chat(model=MODEL, messages=ASK, options={"num_predict": 1})
    named = " ".join(["get_weather", "The weather in a city", *WEATHER_PARAMS["properties"]])
    assert r.prompt_eval_count - bare.prompt_eval_count >= tokens(server, named)
    none = c.chat(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        options={"tool_choice": "none", "num_predict": 30},
    )
    assert none.message.content and not none.message.tool_calls


def test_ollama_history_with_calls_and_results(server):
    def history(result: str) -> list[dict]:
        return [
            *ASK,
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "get_weather",
                                          "arguments": {"city": "Paris", "unit": "celsius"}}}]},
            {"role": "tool", "content": result},
        ]  # fmt: skip

    def ask(result: str) -> ollama.ChatResponse:
        return ollama.Client(host=server.url).chat(
            model=MODEL,
            messages=history(result),
            tools=[WEATHER],
            options={"num_predict": 40, "temperature": 0},
        )

    short = '{"temperature": 21}'
    longer = '{"temperature": 21, "humidity": 64, "wind": "north-east, 12 km/h", "sky": "grey"}'
    r = ask(short)
    assert r.done and "<tool_call" not in r.message.content
    # The result reached the prompt: a longer result makes it longer by about the
    # extra tokens (give or take a merge at either edge).
    grown = ask(longer).prompt_eval_count - r.prompt_eval_count
    extra = tokens(server, longer) - tokens(server, short)
    assert extra > 10 and abs(grown - extra) <= 2, (grown, extra)


# -- LangChain and pydantic-ai --------------------------------------------------------


def get_weather(city: str, unit: str) -> str:
    """The weather in a city.

    Args:
        city: the city
        unit: celsius or fahrenheit
    """
    return f"21 {unit} in {city}"


class Weather(BaseModel):
    city: str
    temperature: int


def test_langchain_openai_bind_tools_and_structured_output(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=server.v1, api_key="x", temperature=0, max_tokens=120)
    msg = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("Weather in Rome?")
    [call] = msg.tool_calls[:1]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    out = llm.with_structured_output(Weather, method="function_calling").invoke("Rome, 21 degrees")
    assert isinstance(out, Weather)


def test_langchain_ollama_bind_tools(server):
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model=MODEL, base_url=server.url, temperature=0, num_predict=120)
    forced = llm.bind_tools([get_weather], options={"tool_choice": "required", "temperature": 0})
    msg = forced.invoke("Weather in Rome?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"
    assert isinstance(msg.tool_calls[0]["args"]["city"], str)


def test_pydantic_ai_agent_with_a_tool_and_structured_output(server):
    from pydantic_ai import Agent, RunContext
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings
    from pydantic_ai.tools import ToolDefinition

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=server.v1, api_key="x"))
    seen: list[str] = []

    def settings(ctx: RunContext[None]) -> ModelSettings:
        # The first step must call the tool (a 135M model might go straight to the
        # output); after it, only the output is left to give.
        choice = "auto" if seen else "required"
        return {"temperature": 0, "max_tokens": 200, "parallel_tool_calls": False,
                "tool_choice": choice}  # fmt: skip

    agent = Agent(model, output_type=Weather, model_settings=settings)

    async def once(ctx: RunContext[None], tool: ToolDefinition) -> ToolDefinition | None:
        # A one-shot tool: once it has answered, only the output is left to give
        # (a 135M model would otherwise ask again and again).
        return None if seen else tool

    @agent.tool_plain(prepare=once)
    def city_temperature(city: str) -> int:
        """The temperature in a city, in degrees celsius."""
        seen.append(city)
        return 21

    result = agent.run_sync("What is the temperature in Paris?")
    assert len(seen) == 1 and isinstance(seen[0], str)  # the tool ran, once
    assert isinstance(result.output, Weather)
    Weather.model_validate(result.output.model_dump())
    # ...and its result went back to the model, in the request for the output
    [ret] = [
        p for m in result.all_messages() for p in m.parts
        if isinstance(p, ToolReturnPart) and p.tool_name == "city_temperature"
    ]  # fmt: skip
    back = [
        # the shared server's log holds prompt requests too (messages null)
        m for r in requests_sent(server) for m in r["messages"] or ()
        if m["role"] == "tool" and m.get("tool_call_id") == ret.tool_call_id
    ]  # fmt: skip
    assert back and back[-1]["content"] == "21"


@pytest.fixture(scope="module")
def proxy(server, tmp_path_factory):
    """Another llmkit in front of the shared server, reaching it in each dialect."""
    from tests.conftest import start_server

    tmp = tmp_path_factory.mktemp("tools-proxy")
    host = server.url.removeprefix("http://")
    (tmp / "models.yaml").write_text(
        f"models:\n  - upstream: openai://{host}/v1\n    model: smol\n"
        f"    served_model_name: [via-openai]\n"
        f"  - upstream: ollama://{host}\n    model: smol\n"
        f"    served_model_name: [via-ollama]\n"
    )
    s = start_server(tmp, "--config", str(tmp / "models.yaml"))
    yield s
    s.stop()


@pytest.mark.parametrize("via", ["via-openai", "via-ollama"])
def test_an_upstream_passes_tools_on_in_its_dialect_and_the_calls_come_back(proxy, via):
    client = proxy.client()
    forced = client.chat.completions.create(
        model=via, messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=120,
    )  # fmt: skip
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)
    # The call and its result go back through the upstream, which answers in text.
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21, "unit": "celsius"}'},
    ]
    final = client.chat.completions.create(
        model=via, messages=history, tools=[WEATHER], temperature=0, max_tokens=40
    )
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls
    # The Ollama dialect in front of it, too: arguments as an object.
    o = ollama.Client(host=proxy.url).chat(
        model=via, messages=ASK, tools=[WEATHER],
        options={"tool_choice": "required", "temperature": 0, "num_predict": 120},
    )  # fmt: skip
    assert o.message.tool_calls and o.message.tool_calls[0].function.name == "get_weather"
    jsonschema.validate(dict(o.message.tool_calls[0].function.arguments), WEATHER_PARAMS)
