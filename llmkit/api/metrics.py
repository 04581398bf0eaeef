"""``/metrics`` in Prometheus' text format, and what feeds it.

Each app has its own ``CollectorRegistry`` (on ``app.state``, no module globals),
so two servers in one process (tests, ``llmkit run``) never mix their counts.

- requests by route template, method and status (``RequestCounter``, an ASGI
  layer: the route's template, not the raw path, so ids do not explode it);
- prompt and completion tokens, time to first token and time per output token
  per model (``Metrics.observer``, fed by the generation streams);
- queue depth, running sequences and KV-cache cells per model, read from the
  engines when Prometheus scrapes (``_EngineCollector``);
- MCP tool calls by server, tool and outcome, and their durations
  (``Metrics.mcp_call``, fed by ``api.mcp.servers``).

``/metrics`` needs the key like every route, unless ``--metrics-public``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmkit.core.types import Chunk
from llmkit.engines.registry import ModelRegistry

router = APIRouter()

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_PER_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)


class _EngineCollector(Collector):
    """What each served model is doing, read at scrape time."""

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        running = GaugeMetricFamily(
            "llmkit_running_sequences", "Generations running now", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "llmkit_queue_depth", "Requests waiting for a sequence", labels=["model"]
        )
        loaded = GaugeMetricFamily("llmkit_model_loaded", "1 when loaded", labels=["model"])
        kv = GaugeMetricFamily(
            "llmkit_kv_cache_cells", "KV-cache cells by state", labels=["model", "state"]
        )
        for m in self.models.models:
            r, q = m.engine.load()
            running.add_metric([m.name], r)
            queued.add_metric([m.name], q)
            loaded.add_metric([m.name], 1 if m.loaded else 0)
            usage = m.engine.kv_cache() if m.loaded else {}
            for state, cells in usage.items():
                kv.add_metric([m.name, state], cells)
        yield from (running, queued, loaded, kv)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "llmkit_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.prompt_tokens = Counter(
            "llmkit_prompt_tokens", "Prompt tokens read", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "llmkit_completion_tokens", "Tokens generated", ["model"], registry=r
        )
        self.ttft = Histogram(
            "llmkit_time_to_first_token_seconds",
            "From the request to its first token",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tpot = Histogram(
            "llmkit_time_per_output_token_seconds",
            "Between tokens after the first, per generation",
            ["model"],
            buckets=_PER_TOKEN,
            registry=r,
        )
        self.mcp_calls = Counter(
            "llmkit_mcp_calls",
            "MCP tool calls, by server, tool and outcome (ok, error, timeout, unreachable)",
            ["server", "tool", "outcome"],
            registry=r,
        )
        self.mcp_seconds = Histogram(
            "llmkit_mcp_call_seconds", "MCP tool call durations", ["server"], registry=r
        )

    def watch(self, models: ModelRegistry) -> None:
        self.registry.register(_EngineCollector(models))

    def mcp_call(self, server: str, tool: str, seconds: float, outcome: str) -> None:
        self.mcp_calls.labels(server, tool, outcome).inc()
        self.mcp_seconds.labels(server).observe(seconds)

    def observer(self, model: str) -> StreamObserver:
        return StreamObserver(self, model, time.perf_counter())


@dataclass
class StreamObserver:
    """Times one generation's chunks and counts its tokens when it ends."""

    metrics: Metrics
    model: str
    started: float
    first: float | None = None

    def __call__(self, chunk: Chunk) -> None:
        now = time.perf_counter()
        if self.first is None and (chunk.text or chunk.token_ids or chunk.finish_reason):
            self.first = now
            self.metrics.ttft.labels(self.model).observe(now - self.started)
        if chunk.usage is not None:
            u = chunk.usage
            self.metrics.prompt_tokens.labels(self.model).inc(u.prompt_tokens)
            self.metrics.completion_tokens.labels(self.model).inc(u.completion_tokens)
            if self.first is not None and u.completion_tokens > 1:
                per = (now - self.first) / (u.completion_tokens - 1)
                self.metrics.tpot.labels(self.model).observe(per)


class RequestCounter:
    """An ASGI layer that counts each response by route template and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
