"""Every mistake gets OpenAI's error shape, the right status, and no traceback."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from tests.conftest import start_server

MODEL = "SmolLM2-135M-Instruct"
HELLO = [{"role": "user", "content": "Hello"}]


def assert_error_shape(body: dict) -> dict:
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    return err


def test_unknown_model_is_404_naming_served_models(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    err = assert_error_shape(e.value.response.json())
    assert (
        "gpt-4o" in err["message"]
        and "SmolLM2-135M-Instruct" in err["message"]
        and "smol" in err["message"]
    )
    assert err["code"] == "model_not_found" and err["param"] == "model"


def test_too_long_is_400_naming_the_numbers(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=9000)
    err = assert_error_shape(e.value.response.json())
    assert err["code"] == "context_length_exceeded"
    assert "8192" in err["message"] and "9000" in err["message"]
    prompt_tokens = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=1
    ).usage.prompt_tokens
    assert f"{prompt_tokens} in the prompt" in err["message"]


def test_prompt_alone_over_context_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="word " * 9000, max_tokens=None)
    assert "8192" in e.value.response.json()["error"]["message"]


def test_no_max_tokens_gets_the_rest_of_the_context(client):
    r = client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0)
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"model": "smol", "messages": [', "not valid JSON"),
        (b'{"model": "smol", "messages": [{"role": "robot", "content": "x"}]}', "messages.0.role"),
        (b'{"model": "smol", "messages": "hello"}', "messages"),
        (
            b'{"model": "smol", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": "hot"}',
            "temperature",
        ),
        (
            b'{"model": "smol", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
            "max_tokens",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (
            b'{"model": "smol", "messages": [{"role": "user", "content": '
            b'[{"type": "image_url", "image_url": {"url": "x"}}]}]}',
            "does not take images",  # a text-only model
        ),
        (
            b'{"model": "smol", "messages": [{"role": "user", "content": "x"}], '
            b'"logprobs": true, "top_logprobs": 21}',
            "top_logprobs",
        ),
    ],
)
def test_bad_requests_are_400_saying_which_field(server, body, needle):
    r = httpx.post(
        server.v1 + "/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    err = assert_error_shape(r.json())
    assert err["type"] == "invalid_request_error"
    assert needle in err["message"] or needle == err["param"]


def test_missing_content_type_is_explained(server):
    r = httpx.post(server.v1 + "/chat/completions", content=b'{"model":"smol","messages":[]}')
    assert r.status_code == 400
    assert "application/json" in assert_error_shape(r.json())["message"]


def test_unknown_route_and_method(server):
    assert httpx.get(server.v1 + "/nope").status_code == 404
    assert_error_shape(httpx.get(server.v1 + "/nope").json())
    r = httpx.get(server.v1 + "/chat/completions")
    assert r.status_code == 405
    assert_error_shape(r.json())


def test_no_traceback_in_the_log_for_user_mistakes(server):
    httpx.post(
        server.v1 + "/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    httpx.post(server.v1 + "/chat/completions", json={"model": "nope", "messages": HELLO})
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("keyed"), "--api-key", "sk-test", "--parallel", "1")
    yield s
    s.stop()


def test_api_key_required_when_set(keyed_server):
    c = openai.OpenAI(base_url=keyed_server.v1, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        c.models.list()
    assert assert_error_shape(e.value.response.json())["code"] == "invalid_api_key"
    r = httpx.get(keyed_server.v1 + "/models")
    assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]
    ok = keyed_server.client(api_key="sk-test").chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=2
    )
    assert ok.choices[0].message.content is not None
    assert httpx.get(keyed_server.url + "/health").status_code == 200  # probes need no key


def test_ollama_routes_need_the_key_too(keyed_server):
    body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    r = httpx.post(keyed_server.url + "/api/generate", json=body)
    assert r.status_code == 401 and isinstance(r.json()["error"], str)
    assert r.json()["code"] == "invalid_api_key"  # beside Ollama's string, for llmkit's client
    ok = ollama.Client(host=keyed_server.url, headers={"Authorization": "Bearer sk-test"})
    assert ok.generate(**body).done
    assert httpx.get(keyed_server.url + "/").status_code == 200  # probes need no key
