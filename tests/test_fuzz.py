"""Fuzzing every route of every dialect from the server's own OpenAPI document
(schemathesis, on hypothesis): whatever arrives, the answer is never a 5xx, and
every error comes in its dialect's shape (OpenAI's ``{"error": {...}}`` under
``/v1`` and the rest, Ollama's ``{"error": "..."}`` under ``/api``).

Twice: in-process on the toy engine, for breadth (many cases a route), and
against a real ``llmkit serve`` with the bundled model and a small context, for
what only the real tokenizer and chat template can get wrong."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import free_port, start_server
from tests.test_guard import app_with

CASES: dict[str, int] = {"in-process": 0, "real": 0}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure here is reproducible
)


def dialect_shape(ctx, response, case) -> bool:  # type: ignore[no-untyped-def]
    """An error body in the shape of the path's dialect."""
    if response.status_code < 400 or case.method.upper() == "HEAD":  # HEAD: no body
        return True
    body = json.loads(response.content)
    if case.path.startswith("/api/"):
        assert isinstance(body.get("error"), str) and body["error"], body
    else:
        err = body.get("error")
        assert isinstance(err, dict) and err.get("message") and err.get("type"), body
    return True


# Starlette's test client calls itself "testserver": a name the guard must be told of.
IN_PROCESS = schemathesis.openapi.from_asgi("/openapi.json", app_with(allowed_host=["testserver"]))


@IN_PROCESS.parametrize()
@FUZZ
def test_in_process_every_route_answers_without_5xx_in_its_dialect(case):
    CASES["in-process"] += 1
    case.call_and_validate(checks=[not_a_server_error, dialect_shape])


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
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy()

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)  # fmt: skip
        def run(case):  # type: ignore[no-untyped-def]
            CASES["real"] += 1
            case.call_and_validate(
                base_url=small_server.url, checks=[not_a_server_error, dialect_shape], timeout=60
            )

        try:
            from hypothesis import given

            given(strategy)(run)()
        except Exception as e:  # keep going: report every failing route at once
            failures.append(f"{operation.method.upper()} {operation.path}: {e}")
    assert not failures, "\n\n".join(failures)
    assert CASES["real"] >= 100  # every route got cases


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    print(f"\nfuzz cases run: {CASES}")  # the counts the README and notes quote
