"""Fuzzing every route of every dialect from the server's own OpenAPI document
(schemathesis, on hypothesis): whatever arrives, the answer is never a 5xx, and
every error comes in its dialect's shape (OpenAI's ``{"error": {...}}`` under
``/v1`` and the rest, Ollama's ``{"error": "..."}`` under ``/api``, Cohere's
``{"id", "message"}`` under ``/v2``).

Twice: in-process on the toy engine, for breadth (many cases a route), and
against a real ``llmkit serve`` with the bundled model and a small context, for
what only the real tokenizer and chat template can get wrong."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import free_port, start_server
from tests.test_guard import app_with

# Cases run, per dialect-neutral route ("POST /v1/chat/completions"), per run.
CASES: dict[str, Counter[str]] = {"in-process": Counter(), "real": Counter()}


def fuzz_every_route(schema, kind: str, examples: int, call) -> list[str]:  # type: ignore[no-untyped-def]
    """``examples`` cases (at most) on each operation of ``schema``, each one checked by
    ``call``; the failures, one line per route, so that every failing route shows."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        route = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)  # fmt: skip
        @given(operation.as_strategy())
        def run(case):  # type: ignore[no-untyped-def]
            CASES[kind][route] += 1  # noqa: B023 - run() runs within this iteration
            call(case)

        try:
            run()
        except Exception as e:  # keep going: report every failing route at once
            failures.append(f"{route}: {e}")
        # Every route got its share: at least a few cases where there is anything to
        # vary (a route with no parameters and no body has only one case to give, one
        # with a query alone, such as GET /mcp/servers?refresh=, only a few).
        if operation.body or operation.path_parameters:
            least = min(5, examples)
        else:
            least = min(2, examples) if operation.query else 1
        assert CASES[kind][route] >= least, (route, CASES[kind])
    return failures


def dialect_shape(ctx, response, case) -> bool:  # type: ignore[no-untyped-def]
    """An error body in the shape of the path's dialect."""
    if response.status_code < 400 or case.method.upper() == "HEAD":  # HEAD: no body
        return True
    body = json.loads(response.content)
    if case.path.startswith("/api/"):
        assert isinstance(body.get("error"), str) and body["error"], body
    elif case.path.startswith("/v2/"):  # Cohere's (rerank): {"id", "message"}
        assert isinstance(body.get("message"), str) and body["message"], body
    else:
        err = body.get("error")
        assert isinstance(err, dict) and err.get("message") and err.get("type"), body
    return True


CHECKS = [not_a_server_error, dialect_shape]


def test_in_process_every_route_answers_without_5xx_in_its_dialect():
    # Starlette's test client calls itself "testserver": a name the guard must be told of.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_with(allowed_host=["testserver"]))
    failures = fuzz_every_route(
        schema, "in-process", 40, lambda case: case.call_and_validate(checks=CHECKS)
    )
    assert not failures, "\n\n".join(failures)
    assert len(CASES["in-process"]) >= 12  # every route of every dialect


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    # /api/pull is fuzzed too: its hubs are a loopback port nothing listens on.
    dead = f"http://127.0.0.1:{free_port()}"
    hubs = {"HF_ENDPOINT": dead, "LLMKIT_HF_MIRROR": dead, "MODELSCOPE_ENDPOINT": dead}
    s = start_server(
        tmp_path_factory.mktemp("fuzz"), "--max-model-len", "96", "--parallel", "2", env=hubs
    )
    yield s
    s.stop()


def test_against_the_real_model_no_5xx_in_any_dialect(small_server):
    schema = schemathesis.openapi.from_url(small_server.url + "/openapi.json")
    failures = fuzz_every_route(
        schema,
        "real",
        12,
        lambda case: case.call_and_validate(base_url=small_server.url, checks=CHECKS, timeout=60),
    )
    assert not failures, "\n\n".join(failures)
    assert len(CASES["real"]) >= 12 and sum(CASES["real"].values()) >= 100


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    print(
        f"\nfuzz cases run: { {k: sum(v.values()) for k, v in CASES.items()} } {CASES}"
    )  # the counts the README and notes quote
