"""The Ollama API over raw HTTP: shapes as in Ollama's reference, options mapped
to the same sampling as the OpenAI side, errors in Ollama's shape."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from llmkit.config.settings import split_host
from tests.conftest import free_port, start_server

MODEL = "SmolLM2-135M-Instruct"
GREEDY = {"temperature": 0, "top_k": 0, "top_p": 1, "repeat_penalty": 1}


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def lines(server, path: str, body: dict) -> list[dict]:
    with httpx.stream("POST", server.url + path, json=body, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in r.iter_lines() if line]


def test_root_and_version(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert httpx.head(server.url + "/").status_code == 200
    assert httpx.get(server.url + "/api/version").json()["version"]


def test_tags_ps_show_describe_the_served_model(server):
    tags = httpx.get(server.url + "/api/tags").json()["models"]
    assert [m["name"] for m in tags] == [f"{MODEL}:latest", "smol:latest"]  # Ollama's tags
    d = tags[0]["details"]
    assert d["format"] == "gguf" and d["family"] == "llama"
    assert d["parameter_size"] == "135M" and d["quantization_level"] == "Q4_1"
    assert tags[0]["size"] > 50_000_000 and len(tags[0]["digest"]) == 64

    ps = httpx.get(server.url + "/api/ps").json()["models"]
    assert {m["name"] for m in ps} == {f"{MODEL}:latest", "smol:latest"}
    assert ps[0]["context_length"] == 8192 and ps[0]["expires_at"]

    show = post(server, "/api/show", {"model": "smol"}).json()
    assert "<|im_start|>" in show["template"]
    assert show["model_info"]["llama.block_count"] == 30
    assert show["model_info"]["llama.attention.head_count_kv"] == 3
    assert show["license"] == "apache-2.0" and show["capabilities"] == ["completion", "embedding"]
    assert post(server, "/api/show", {"name": MODEL}).status_code == 200  # older clients


def test_chat_stream_is_ndjson_ending_with_stats(server):
    out = lines(
        server,
        "/api/chat",
        {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "options": GREEDY},
    )
    *parts, last = out
    assert parts and all(p["done"] is False for p in parts)
    assert all(p["message"]["role"] == "assistant" and p["model"] == MODEL for p in parts)
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert last["eval_count"] >= len(parts) and last["prompt_eval_count"] > 0
    assert last["total_duration"] >= last["eval_duration"] > 0
    assert last["created_at"].endswith("Z")


def test_chat_greedy_equals_the_openai_side(server, client):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a fruit."},
    ]
    o = post(
        server,
        "/api/chat",
        {"model": MODEL, "messages": messages, "stream": False, "options": GREEDY},
    ).json()
    ref = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=200
    )
    assert o["message"]["content"] == ref.choices[0].message.content
    assert o["prompt_eval_count"] == ref.usage.prompt_tokens
    assert o["eval_count"] == ref.usage.completion_tokens


def test_options_num_predict_stop_seed(server):
    base = {"model": MODEL, "prompt": "Write a long story about a dragon.", "stream": False}
    r = post(server, "/api/generate", {**base, "options": {"num_predict": 7}}).json()
    assert r["eval_count"] == 7 and r["done_reason"] == "length"

    full = post(server, "/api/generate", {**base, "options": {**GREEDY, "num_predict": 40}})
    text = full.json()["response"]
    word = text.split()[3]
    cut = post(
        server, "/api/generate", {**base, "options": {**GREEDY, "num_predict": 40, "stop": [word]}}
    ).json()
    assert word not in cut["response"] and text.startswith(cut["response"])
    assert cut["done_reason"] == "stop"

    seeded = {**base, "options": {"seed": 7, "temperature": 1.0, "num_predict": 20}}
    a, b = (post(server, "/api/generate", seeded).json()["response"] for _ in range(2))
    assert a == b


def test_num_ctx_limits_the_request(server):
    r = post(
        server,
        "/api/generate",
        {"model": MODEL, "prompt": "word " * 50, "options": {"num_ctx": 32}},
    )
    assert r.status_code == 400
    assert "32" in r.json()["error"]


def test_format_json_and_schema(server):
    base = {"model": MODEL, "stream": False, "options": {"seed": 1, "temperature": 0.7}}
    r = post(
        server, "/api/generate", {**base, "prompt": "Describe a cat as JSON.", "format": "json"}
    )
    assert isinstance(json.loads(r.json()["response"]), dict)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    r = post(
        server,
        "/api/chat",
        {**base, "messages": [{"role": "user", "content": "Invent a person."}], "format": schema},
    )
    data = json.loads(r.json()["message"]["content"])
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_generate_system_template_raw_and_context(server, client):
    prompt = "Name a color."
    with_system = post(
        server,
        "/api/generate",
        {"model": MODEL, "prompt": prompt, "system": "Be brief.", "stream": False},
    ).json()
    ref = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
        max_tokens=1,
    )
    assert with_system["prompt_eval_count"] == ref.usage.prompt_tokens

    # A Go template override renders to the same text as sending it raw.
    chatml = "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}"
    raw_text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    opts = {**GREEDY, "num_predict": 20}
    templated = post(
        server,
        "/api/generate",
        {"model": MODEL, "prompt": prompt, "template": chatml, "stream": False, "options": opts},
    ).json()
    raw = post(
        server,
        "/api/generate",
        {"model": MODEL, "prompt": raw_text, "raw": True, "stream": False, "options": opts},
    ).json()
    assert templated["response"] == raw["response"]
    assert templated["prompt_eval_count"] == raw["prompt_eval_count"]

    # ``context`` carries the conversation: the next turn's prompt is it plus the new turn.
    first = post(
        server, "/api/generate", {"model": MODEL, "prompt": "My name is Ada.", "stream": False}
    ).json()
    follow = {"model": MODEL, "prompt": "What is my name?", "stream": False}
    alone = post(server, "/api/generate", follow).json()
    cont = post(server, "/api/generate", {**follow, "context": first["context"]}).json()
    assert cont["prompt_eval_count"] == len(first["context"]) + alone["prompt_eval_count"]
    assert first["context"][: first["prompt_eval_count"]]  # prompt then reply tokens


def test_empty_prompt_loads_and_keep_alive_is_accepted(server):
    r = post(server, "/api/generate", {"model": MODEL, "keep_alive": "5m"}).json()
    assert r["done"] is True and r["done_reason"] == "load"
    r = post(server, "/api/chat", {"model": MODEL, "messages": [], "keep_alive": 0}).json()
    assert r["done_reason"] == "unload" and r["message"]["content"] == ""
    r = post(
        server,
        "/api/chat",
        {
            "model": "smol:latest",
            "messages": [{"role": "user", "content": "Hi"}],
            "keep_alive": -1,
            "stream": False,
            "options": {"num_predict": 2},
        },
    )
    assert r.status_code == 200 and r.json()["model"] == "smol:latest"


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/api/chat", {"model": "llama3", "messages": []}, 404, '"llama3" not found'),
        ("/api/generate", {"model": "llama3", "prompt": "x"}, 404, "serves: SmolLM2"),
        ("/api/show", {"model": "llama3"}, 404, "llama3"),
        ("/api/chat", {"messages": []}, 400, "model"),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "x"}]}, 400, "role"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "images": ["aGk="]}, 400, "images"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "think": True}, 400, "thinking"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "suffix": "y"}, 400, "suffix"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "options": {"num_predict": 0}}, 400, ""),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "x", "template": "{{ range .Messages }}{{ end }}"},
            400,
            "range",
        ),
    ],
)
def test_errors_in_ollama_shape(server, path, body, status, needle):
    r = post(server, path, body)
    assert r.status_code == status
    assert isinstance(r.json()["error"], str) and needle in r.json()["error"]
    # Beside Ollama's string, only what llmkit's client reads back (errors with a code).
    assert set(r.json()) - {"error"} <= {"code", "param", "details"}


def test_curl_style_body_without_json_content_type(server):
    # Ollama's docs use ``curl -d '{...}'``, which labels the body as a form.
    body = json.dumps(
        {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    )
    r = httpx.post(
        server.url + "/api/generate",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and r.json()["done"] is True
    bad = httpx.post(server.url + "/api/chat", content=b'{"model": ')
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:11434", ("0.0.0.0", 11434)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("http://localhost:8080/", ("localhost", 8080)),
        ("[::1]:9000", ("::1", 9000)),
        ("::1", ("::1", None)),
        (":8080", ("0.0.0.0", 8080)),
    ],
)
def test_split_host(value, expected):
    assert split_host(value) == expected


@pytest.mark.parametrize("how", ["flag", "env"])
def test_host_with_port_like_ollama_host(tmp_path, how):
    port = free_port()
    listen = f"127.0.0.1:{port}"
    if how == "flag":
        s = start_server(tmp_path, "--host", listen, "--parallel", "1", port=port)
    else:
        s = start_server(tmp_path, "--parallel", "1", env={"LLMKIT_HOST": listen}, port=port)
    try:
        assert httpx.get(f"http://{listen}/api/version").status_code == 200
        assert f"http://{listen}" in s.log()
    finally:
        s.stop()


def test_conflicting_host_port_and_port_is_a_usage_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "llmkit", "serve", "--host", "127.0.0.1:1234", "--port", "99"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "host says port 1234" in r.stderr
