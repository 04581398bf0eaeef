"""Every llmkit error with a code crosses HTTP and comes back as itself: rendered
by the server's own dialect renderers (``api/openai/errors``, ``api/ollama/errors``),
as a plain error response or as the last line of a stream, and read back by the
client into the same class with the same fields. Servers other than llmkit (a
hosted OpenAI, vLLM) fall back on the HTTP status. The real-server version is
``test_chat_api.test_server_errors_reach_a_chat_as_themselves``."""

from __future__ import annotations

import json

import httpx
import pytest

from llmkit import errors as E
from llmkit.api.ollama.errors import error_line
from llmkit.api.openai.errors import error_body
from llmkit.client.http import Client
from llmkit.core.types import Message

HI = [Message("user", "hi")]
EXAMPLES: list[E.LlmkitError] = [
    E.ContextLengthError(prompt_tokens=300, max_tokens=64, context_length=256),
    E.ContextLengthError(prompt_tokens=300, max_tokens=None, context_length=256, param="prompt"),
    E.AuthenticationError("Missing Bearer key."),
    E.ModelNotFoundError("gpt-4o", ["smol", "SmolLM2-135M-Instruct"]),
    E.ConversationNotFoundError("work"),
    E.ConversationExistsError("work"),
    E.ResponseNotFoundError("resp_1", param="previous_response_id"),
    E.ConversationItemNotFoundError("conv_1", "msg_1"),
    E.VisionUnsupportedError("smol", ["completion"]),
    E.ConversationBusyError("work/ideas"),
    E.ServerBusyError("The queue is full.", retry_after=7),
    E.UpstreamError("The upstream server http://gpu:8000 answered 500: boom"),
    E.StoreError("The database is locked."),
    E.ModelSpecError("No model named 'x'."),
    E.ConfigError("--parallel must be at least 1."),
    E.InsufficientMemoryError("It needs 9 GiB; 4 GiB are free."),
    E.PullError("No source could deliver it.", attempts=[("huggingface", "404")]),
    E.ForbiddenError("Host 'evil.example' is not this server's name."),
    E.PayloadTooLargeError("The request body is larger than 16 MiB."),
    E.RateLimitError("At most 60 requests a minute.", retry_after=3),
    E.ModelFailedError("The model failed: ggml_abort; retry the request."),
    E.UpstreamTimeoutError("The upstream server http://gpu:8000 stopped answering mid-reply."),
    E.DiskFullError("The disk is full (/models/x.incomplete)."),
]


def test_the_examples_cover_every_code():
    assert {type(e).code for e in EXAMPLES} == set(E._coded())


def rendered(dialect: str, exc: E.LlmkitError) -> dict:
    return error_body(exc).model_dump() if dialect == "openai" else error_line(exc).model_dump()


def serving(dialect: str, body: dict, status: int, *, mid_stream: bool) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/show":
            return httpx.Response(200, json={})
        if request.url.path == "/api/ps":
            return httpx.Response(200, json={"models": []})
        if not mid_stream:
            return httpx.Response(status, json=body)
        if dialect == "ollama":  # the headers had gone: a 200, the error its last line
            return httpx.Response(200, text='{"response":"a","done":false}\n' + json.dumps(body))
        return httpx.Response(200, text=f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n")

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("mid_stream", [False, True])
@pytest.mark.parametrize("dialect", ["openai", "ollama"])
@pytest.mark.parametrize("exc", EXAMPLES, ids=lambda e: f"{type(e).__name__}")
def test_errors_come_back_as_themselves(exc, dialect, mid_stream):
    body = rendered(dialect, exc)
    transport = serving(dialect, body, exc.status, mid_stream=mid_stream)
    c = Client(f"{dialect}://h", transport=transport)
    with pytest.raises(E.LlmkitError) as got:
        list(c.stream_chat("m", HI))
    back = got.value
    assert type(back) is type(exc)
    assert back.wire_fields() == exc.wire_fields()
    assert (back.code, back.param, back.status) == (exc.code, exc.param, exc.status)
    if dialect == "openai" or not isinstance(exc, E.ModelNotFoundError):
        assert back.message == exc.message  # Ollama words a missing model its own way


def test_the_fields_restored_are_the_constructors():
    back = E.error_from_code(
        "context_length_exceeded",
        "too long",
        param="messages",
        fields={"prompt_tokens": 300, "max_tokens": None, "context_length": 256},
    )
    assert isinstance(back, E.ContextLengthError)
    assert (back.prompt_tokens, back.max_tokens, back.context_length) == (300, None, 256)
    pulled = E.error_from_code("pull_failed", "no", fields={"attempts": [["huggingface", "404"]]})
    assert isinstance(pulled, E.PullError) and pulled.attempts == [("huggingface", "404")]
    assert E.error_from_code("insufficient_memory", "big").estimate is None


def test_the_bodies_stay_in_each_dialects_shape():
    exc = E.ContextLengthError(prompt_tokens=300, max_tokens=64, context_length=256)
    openai_body = rendered("openai", exc)
    assert set(openai_body["error"]) == {"message", "type", "param", "code"}
    assert openai_body["details"] == {"prompt_tokens": 300, "max_tokens": 64, "context_length": 256}
    plain = rendered("openai", E.InvalidRequestError("bad", param="temperature"))
    assert set(plain) == {"error"}  # nothing to add: OpenAI's shape exactly
    line = rendered("ollama", exc)
    assert line["error"] == exc.message and line["code"] == "context_length_exceeded"
    assert rendered("ollama", E.InvalidRequestError("bad", param="temperature")) == {"error": "bad"}


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        # OpenAI's own: its code, but no numbers to rebuild a ContextLengthError with
        (
            400,
            {"error": {"message": "This model's maximum context length is 8192 tokens.",
                       "type": "invalid_request_error", "param": "messages",
                       "code": "context_length_exceeded"}},
            E.InvalidRequestError,
            "context_length_exceeded",
        ),
        (401, {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}},
         E.AuthenticationError, "invalid_api_key"),
        # vLLM's codes are HTTP statuses, as numbers
        (400, {"error": {"message": "bad", "type": "BadRequestError", "code": 400}},
         E.InvalidRequestError, None),
        (429, {"error": {"message": "slow down", "code": "rate_limit_exceeded"}},
         E.ServerBusyError, "rate_limit_exceeded"),
        (404, {"error": 'model "x" not found, try pulling it first'}, E.NotFoundError, None),
    ],
)  # fmt: skip
def test_other_servers_errors_fall_back_on_the_status(status, body, cls, code):
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json=body))
    with pytest.raises(E.LlmkitError) as got:
        list(Client("openai://h", transport=transport).stream_chat("m", HI))
    assert type(got.value) is cls and got.value.code == code
