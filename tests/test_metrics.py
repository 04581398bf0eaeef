"""``/metrics`` (Prometheus text), the request id on every response and log line.

In-process on the toy engine: a request's effect on the counters is exact."""

from __future__ import annotations

import logging

from prometheus_client.parser import text_string_to_metric_families

from llmkit.api.request_id import RequestIdFilter
from llmkit.errors import EngineError
from tests.test_guard import CHAT, app_with, call
from tests.toy_engine import ToyEngine, ToyOptions


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_tokens_and_timings():
    app = app_with(api_key="k")
    auth = {"Authorization": "Bearer k"}
    assert call(app, "GET", "/metrics").status_code == 401  # guarded like every route
    assert call(app, "POST", "/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
    body = {**CHAT, "stream": True, "options": {"num_predict": 2}}
    assert call(app, "POST", "/api/chat", json=body, headers=auth).status_code == 200
    r = call(app, "GET", "/metrics", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    chat = (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200"))
    assert m[("llmkit_requests_total", chat)] == 1
    refused = (("method", "GET"), ("route", "unmatched"), ("status", "401"))  # before routing
    assert m[("llmkit_requests_total", refused)] == 1
    toy = (("model", "toy"),)
    assert m[("llmkit_completion_tokens_total", toy)] == 3 + 2  # the toy says it 3 times, then 2
    assert m[("llmkit_prompt_tokens_total", toy)] == 2
    assert m[("llmkit_time_to_first_token_seconds_count", toy)] == 2
    assert m[("llmkit_time_per_output_token_seconds_count", toy)] == 2
    assert m[("llmkit_running_sequences", toy)] == 0 and m[("llmkit_queue_depth", toy)] == 0


def test_metrics_public_opens_only_metrics():
    app = app_with(api_key="k", metrics_public=True)
    assert call(app, "GET", "/metrics").status_code == 200
    assert call(app, "GET", "/v1/models").status_code == 401


def test_every_response_carries_a_request_id_and_keeps_the_clients():
    app = app_with(api_key="k")
    refused = call(app, "GET", "/v1/models")
    assert refused.status_code == 401 and len(refused.headers["x-request-id"]) == 32
    mine = call(app, "GET", "/health", headers={"X-Request-Id": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    odd = call(app, "GET", "/health", headers={"X-Request-Id": "<script>"})
    assert odd.headers["x-request-id"] != "<script>"


def test_log_lines_written_during_a_request_carry_its_id(caplog):
    app = app_with()
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="llmkit.api"):
        r = call(app, "POST", "/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert r.status_code == 404
    [record] = [rec for rec in caplog.records if "nope" in rec.getMessage()]
    assert record.request_id == r.headers["x-request-id"]  # type: ignore[attr-defined]


class _Broken(ToyEngine):
    async def start(self) -> None:
        raise EngineError("the weights are corrupt")


def test_health_reports_each_model_as_unloaded_ready_or_failed():
    from llmkit.api.app import create_app
    from llmkit.config.settings import ServeSettings
    from llmkit.engines.registry import ModelRegistry, ServedModel

    registry = ModelRegistry(
        [
            ServedModel(["toy"], ToyEngine(ToyOptions()), preload=False),
            ServedModel(["broken"], _Broken(ToyOptions()), preload=False),
        ]
    )
    app = create_app(ServeSettings(), registry)
    states = {m["name"]: m["state"] for m in call(app, "GET", "/health").json()["models"]}
    assert states == {"toy": "unloaded", "broken": "unloaded"}
    assert call(app, "POST", "/v1/chat/completions", json=CHAT).status_code == 200
    r = call(app, "POST", "/v1/chat/completions", json={**CHAT, "model": "broken"})
    assert r.status_code == 500 and "corrupt" in r.text
    models = {m["name"]: m for m in call(app, "GET", "/health").json()["models"]}
    assert models["toy"]["state"] == "ready"
    assert models["broken"]["state"] == "failed" and "corrupt" in models["broken"]["error"]


def test_llama_cpp_reports_its_kv_cache_cells(server):
    import httpx

    httpx.post(server.v1 + "/chat/completions", json={**CHAT, "model": "smol", "max_tokens": 3})
    [model] = httpx.get(server.url + "/health").json()["models"]
    cells = model["kv_cache"]
    assert model["state"] == "ready" and cells["cached"] > 0  # the reply's slot keeps its prefix
    assert cells["used"] + cells["cached"] + cells["free"] == 8192 * 4  # context x parallel
    m = samples(httpx.get(server.url + "/metrics").text)
    name = (("model", "SmolLM2-135M-Instruct"), ("state", "free"))
    assert ("llmkit_kv_cache_cells", name) in m
