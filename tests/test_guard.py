"""The door in front of every route (``api/guard.py``): keys on every route of
every dialect, the DNS-rebinding Host check, Origins, body size, rate, message
count; and a server that others could reach refusing to start without a key.

The app runs in-process on the toy engine (``httpx.ASGITransport``); what is
checked is the status, the dialect's error shape and the headers."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from llmkit.api.app import create_app
from llmkit.config.settings import ServeSettings
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import ConfigError
from tests.toy_engine import ToyEngine, ToyOptions

OPEN = {("GET", "/health"), ("GET", "/"), ("HEAD", "/")}
CHAT = {"model": "toy", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def app_with(**settings: object):  # type: ignore[no-untyped-def]
    registry = ModelRegistry([ServedModel(["toy"], ToyEngine(ToyOptions()))])
    return create_app(ServeSettings(**settings), registry)


def call(app, method: str, path: str, *, host: str = "127.0.0.1:8000", **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())


def routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every route the server's own OpenAPI document lists, and the document itself."""
    out = [("GET", "/openapi.json"), ("GET", "/docs")]
    for path, methods in app.openapi()["paths"].items():
        path = path.replace("{model_id}", "toy")
        out += [(m.upper(), path) for m in methods if (m.upper(), path) not in OPEN]
    return out


def test_every_route_of_every_dialect_needs_the_key():
    app = app_with(api_key="sk-right")
    guarded = routes(app)
    assert len(guarded) >= 12 and any(p.startswith("/api/") for _, p in guarded)
    for method, path in guarded:
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            r = call(app, method, path, headers=headers, json=CHAT)
            assert r.status_code == 401, (method, path, r.text)
            if method == "HEAD":  # no body to read (HEAD /api/blobs/:digest)
                continue
            body = r.json()
            if path.startswith("/api/"):
                assert isinstance(body["error"], str)  # Ollama's shape
            elif path.startswith("/v1/messages"):
                assert body["error"]["type"] == "authentication_error"  # Anthropic's shape
            elif path.startswith("/v2/"):
                assert "key" in body["message"]  # Cohere's shape (/v2/rerank)
            else:
                assert body["error"]["code"] == "invalid_api_key"  # OpenAI's shape
    assert call(app, "GET", "/health").status_code == 200
    assert call(app, "GET", "/").text == "Ollama is running"


def test_the_right_key_opens_every_route_and_a_key_file_holds_several(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nsk-one\n\nsk-two  # the CI's\n")
    app = app_with(api_key_file=keys)
    for key in ("sk-one", "sk-two"):
        auth = {"Authorization": f"Bearer {key}"}
        r = call(app, "POST", "/v1/chat/completions", json=CHAT, headers=auth)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    r = call(app, "GET", "/api/tags", headers={"x-api-key": "sk-two"})  # Anthropic's header
    assert r.status_code == 200
    assert call(app, "GET", "/api/tags", headers={"x-api-key": "# team keys"}).status_code == 401


def test_a_foreign_host_header_is_refused_and_addresses_and_allowed_names_are_not():
    app = app_with(allowed_host=["gpu-box.lan"])
    refused = call(app, "GET", "/v1/models", host="attacker.example:8000")
    assert refused.status_code == 403 and "--allowed-host attacker.example" in refused.text
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "192.168.1.7:8000",
                 "gpu-box.lan:8000"):  # fmt: skip
        assert call(app, "GET", "/v1/models", host=host).status_code == 200, host
    assert call(app_with(allowed_host=["*"]), "GET", "/", host="any.example").status_code == 200


def test_pages_from_other_origins_are_refused_unless_allowed():
    app = app_with()
    r = call(app, "POST", "/api/chat", json=CHAT, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "--cors-origin" in r.json()["error"]
    own = call(app, "GET", "/v1/models", headers={"Origin": "http://127.0.0.1:8000"})
    assert own.status_code == 200  # the server's own page
    allowed = app_with(cors_origin=["https://app.example"])
    pre = call(
        allowed, "OPTIONS", "/v1/chat/completions",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )  # fmt: skip
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    sdk = call(
        allowed, "OPTIONS", "/v1/messages",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "anthropic-version, x-stainless-os"},
    )  # fmt: skip
    # an SDK in a browser sends headers of its own: the preflight lets them through
    assert sdk.headers["access-control-allow-headers"] == "anthropic-version, x-stainless-os"
    r = call(allowed, "GET", "/v1/models", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_a_body_over_the_limit_is_413_whether_its_length_is_given_or_not():
    app = app_with(max_body_mb=0.001)  # 1,048 bytes
    big = b'{"model": "toy", "prompt": "' + b"x" * 4000 + b'"}'
    r = call(app, "POST", "/v1/completions", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    async def chunked():  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    r = call(app, "POST", "/api/generate", content=chunked())
    assert r.status_code == 413 and "--max-body-mb" in r.json()["error"]
    assert call(app, "POST", "/v1/chat/completions", json=CHAT).status_code == 200


def test_a_key_over_its_rate_gets_429_with_retry_after():
    app = app_with(api_key="k", rate_limit=3)
    auth = {"Authorization": "Bearer k"}
    codes = [call(app, "GET", "/v1/models", headers=auth).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = call(app, "GET", "/api/tags", headers=auth)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert call(app, "GET", "/health").status_code == 200  # probes are not counted


def test_too_many_messages_is_a_400_naming_the_limit():
    app = app_with(max_messages=2)
    body = {**CHAT, "messages": [{"role": "user", "content": "hi"}] * 3}
    r = call(app, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = call(app, "POST", "/api/chat", json=body)
    assert r.status_code == 400 and "--max-messages" in r.json()["error"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.7", "::"])
def test_a_reachable_server_needs_a_key_or_no_auth(host):
    with pytest.raises(ConfigError, match="--api-key KEY"):
        ServeSettings(host=host).check_exposure()
    ServeSettings(host=host, api_key="k").check_exposure()
    ServeSettings(host=host, no_auth=True).check_exposure()
    ServeSettings(host="127.0.0.1").check_exposure()


def test_serve_on_all_interfaces_without_a_key_refuses_to_start(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "llmkit", "serve", "--host", "0.0.0.0", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "LLMKIT_HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode != 0 and "--no-auth" in r.stderr and "Traceback" not in r.stderr


def test_n_over_the_limit_is_a_400_naming_it():
    app = app_with(max_n=2)
    r = call(app, "POST", "/v1/chat/completions", json={**CHAT, "n": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    assert "--max-n" in r.json()["error"]["message"]
    r = call(app, "POST", "/v1/completions", json={"model": "toy", "prompt": "x", "n": 3})
    assert r.status_code == 400
    assert call(app, "POST", "/v1/chat/completions", json={**CHAT, "n": 2}).status_code == 200


def test_the_key_is_never_written_to_the_log(tmp_path):
    from tests.conftest import start_server

    secret = "sk-do-not-log-" + "7" * 20
    s = start_server(tmp_path, "--api-key", secret, "--parallel", "1", "--log-requests",
                     "--log-level", "debug")  # fmt: skip
    try:
        for key in (secret, "sk-wrong-key"):
            httpx.post(
                s.v1 + "/chat/completions",
                json={**CHAT, "model": "SmolLM2-135M-Instruct", "max_tokens": 2},
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
        httpx.get(s.url + "/api/tags", headers={"x-api-key": secret}, timeout=60)
    finally:
        s.stop()
    log = s.log()
    assert "llmkit.requests: request:" in log  # the requests themselves were logged
    assert secret not in log and "sk-wrong-key" not in log


def test_the_guard_holds_on_a_real_server(tmp_path):
    """The same door, once through a real ``llmkit serve`` (uvicorn, a socket, the
    flags as typed), driven by httpx: keys, Host, Origins, body size, message
    count, n and rate."""
    from tests.conftest import start_server

    flags = ["--api-key", "k", "--allowed-host", "gpu-box.lan", "--cors-origin",
             "https://app.example", "--max-body-mb", "0.001", "--max-messages", "2",
             "--max-n", "2", "--rate-limit", "40"]  # fmt: skip
    s = start_server(tmp_path, *flags)
    port = s.url.rsplit(":", 1)[1]
    auth = {"Authorization": "Bearer k"}
    chat = {**CHAT, "model": "SmolLM2-135M-Instruct", "max_tokens": 1}
    try:
        with httpx.Client(base_url=s.url, timeout=120) as c:
            assert c.get("/v1/models").status_code == 401
            assert c.get("/v1/models", headers=auth).status_code == 200
            r = c.get("/v1/models", headers={**auth, "Host": f"attacker.example:{port}"})
            assert r.status_code == 403 and "--allowed-host attacker.example" in r.text
            assert c.get("/v1/models", headers={**auth, "Host": f"gpu-box.lan:{port}"}).is_success

            r = c.post("/api/chat", json=chat, headers={**auth, "Origin": "https://evil.example"})
            assert r.status_code == 403 and "--cors-origin" in r.json()["error"]
            pre = c.options(
                "/v1/chat/completions",
                headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
            )
            assert pre.status_code == 204
            assert pre.headers["access-control-allow-origin"] == "https://app.example"

            big = b'{"model": "toy", "prompt": "' + b"x" * 4000 + b'"}'
            r = c.post("/v1/completions", content=big, headers=auth)
            assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
            chunks = (big[i : i + 500] for i in range(0, len(big), 500))  # no Content-Length
            r = c.post("/api/generate", content=chunks, headers=auth)
            assert r.status_code == 413 and "--max-body-mb" in r.json()["error"]

            three = {**chat, "messages": chat["messages"] * 3}
            r = c.post("/v1/chat/completions", json=three, headers=auth)
            assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
            r = c.post("/v1/chat/completions", json={**chat, "n": 3}, headers=auth)
            assert r.status_code == 400 and "--max-n" in r.json()["error"]["message"]
            assert c.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200

            codes = [c.get("/api/tags", headers=auth).status_code for _ in range(40)]
            assert codes[-1] == 429 and 200 in codes  # the rate caught up within a minute
            r = c.get("/api/tags", headers=auth)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert c.get("/health").status_code == 200
    finally:
        s.stop()
