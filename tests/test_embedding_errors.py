"""Embedding requests that cannot be answered: a 400 in each dialect's own shape
that names the field (OpenAI's ``param``; Ollama's message), over the real
server; a model whose engine cannot embed, on the toy engine in-process; and the
shared rules (packing, cutting, dimensions) and the converters as tables."""

from __future__ import annotations

import asyncio
import base64
import struct

import httpx
import pytest

from llmkit.api.app import create_app
from llmkit.api.ollama import embed_convert as ollama_convert
from llmkit.api.ollama import embed_schemas as ollama_s
from llmkit.api.openai import embed_convert as openai_convert
from llmkit.api.openai import embed_schemas as openai_s
from llmkit.config.settings import ServeSettings
from llmkit.engines import embedding
from llmkit.engines.llamacpp.embed import capabilities, pooling_for
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import InvalidRequestError
from tests.toy_engine import ToyEngine, ToyOptions

MODEL = "SmolLM2-135M-Instruct"
LONG = "word " * 3000  # more than the 2048 tokens of the embedding context


def post(server, path: str, body: dict) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(server.url + path, json={"model": MODEL, **body}, timeout=120)


OPENAI_REFUSALS = [
    ({"input": []}, "input", "empty list"),
    ({"input": ["a", ""]}, "input", "input[1] is empty"),
    ({"input": LONG}, "input", "more than the 2048 tokens"),
    ({"input": "a", "dimensions": 10_000}, "dimensions", "between 1 and 576"),
    ({"input": "a", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
    ({"input": [[1, 2, 49152]]}, "input", "0..49151"),
    ({"input": [-1]}, "input", "0..49151"),
]


@pytest.mark.parametrize(("body", "param", "says"), OPENAI_REFUSALS)
def test_openai_refusals_name_the_field(server, body, param, says):
    r = post(server, "/v1/embeddings", body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert says in err["message"]


OLLAMA_REFUSALS = [
    ("/api/embed", {"input": []}, "input must not be an empty list"),
    ("/api/embed", {"input": LONG, "truncate": False}, "input[0] has"),
    ("/api/embed", {"input": "a", "dimensions": 10_000}, "dimensions must be"),
    ("/api/embed", {"input": "a", "dimensions": 0}, "dimensions"),
    ("/api/embeddings", {"prompt": LONG}, "more than the 2048 tokens"),
]


@pytest.mark.parametrize(("path", "body", "says"), OLLAMA_REFUSALS)
def test_ollama_refusals_in_its_shape(server, path, body, says):
    r = post(server, path, body)
    assert r.status_code == 400
    assert list(r.json()) == ["error"] and says in r.json()["error"]


def test_ollama_truncates_to_the_context_by_default(server):
    r = post(server, "/api/embed", {"input": LONG})
    assert r.status_code == 200 and r.json()["prompt_eval_count"] == 2048
    small = post(server, "/api/embed", {"input": LONG, "options": {"num_ctx": 100}})
    assert small.json()["prompt_eval_count"] == 100


def test_ollama_without_input_only_loads_the_model(server):
    assert post(server, "/api/embed", {}).json()["embeddings"] == []
    assert post(server, "/api/embeddings", {"prompt": ""}).json() == {"embedding": []}


def test_a_model_that_cannot_embed_says_so_in_both_dialects():
    app = create_app(
        ServeSettings(), ModelRegistry([ServedModel(["toy"], ToyEngine(ToyOptions()))])
    )

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return [
                await c.post("/v1/embeddings", json={"model": "toy", "input": "hi"}),
                await c.post("/api/embed", json={"model": "toy", "input": "hi"}),
            ]

    openai_r, ollama_r = asyncio.run(go())
    assert openai_r.status_code == ollama_r.status_code == 400
    assert openai_r.json()["error"]["param"] == "model"
    assert "cannot embed" in openai_r.json()["error"]["message"]
    assert "cannot embed" in ollama_r.json()["error"]


# -- the shared rules and the converters, as tables ------------------------------------


@pytest.mark.parametrize(
    ("lengths", "max_tokens", "max_seqs", "batches"),
    [
        ([3, 3, 3], 10, 64, [[0, 1, 2]]),
        ([6, 5, 4], 10, 64, [[0], [1, 2]]),
        ([1, 1, 1, 1, 1], 100, 2, [[0, 1], [2, 3], [4]]),
        ([10, 10], 10, 64, [[0], [1]]),
        ([2, 30, 2, 2], 10, 64, [[0], [1], [2, 3]]),  # too long for a batch: alone
    ],
)
def test_pack_keeps_order_and_limits(lengths, max_tokens, max_seqs, batches):
    assert embedding.pack(lengths, max_tokens, max_seqs) == batches


def test_fit_inputs_cuts_or_refuses():
    assert embedding.fit_inputs([[1, 2, 3], [4]], 2, truncate=True) == [[1, 2], [4]]
    with pytest.raises(InvalidRequestError, match=r"input\[0\] has 3 tokens"):
        embedding.fit_inputs([[1, 2, 3]], 2, truncate=False)


def test_finish_cuts_then_normalises():
    assert embedding.finish([[3.0, 4.0, 12.0]], dimensions=2, normalize=True) == ((0.6, 0.8),)
    assert embedding.finish([[3.0, 4.0]], dimensions=None, normalize=False) == ((3.0, 4.0),)


@pytest.mark.parametrize(
    ("header", "pooling", "caps"),
    [
        ({"general.architecture": "llama"}, 1, ("completion", "embedding")),  # none: mean
        ({"general.architecture": "llama", "llama.pooling_type": "0"}, 1, None),
        ({"general.architecture": "nomic-bert", "nomic-bert.pooling_type": 1}, 1, ("embedding",)),
        ({"general.architecture": "bert", "bert.pooling_type": "2"}, 2, ("embedding",)),  # CLS
        ({"general.architecture": "qwen3", "qwen3.pooling_type": "3"}, 3, ("embedding",)),  # last
    ],
)
def test_pooling_is_the_models_own_or_mean(header, pooling, caps):
    assert pooling_for(header) == pooling
    if caps is not None:
        assert capabilities(header) == caps


def test_a_reranker_cannot_embed():
    header = {"general.architecture": "bert", "bert.pooling_type": "4"}
    assert capabilities(header) == ()
    with pytest.raises(InvalidRequestError, match="reranker"):
        pooling_for(header)


@pytest.mark.parametrize(
    ("wire", "inputs"),
    [
        ("a", ("a",)),
        (["a", "b"], ("a", "b")),
        ([5, 6], ((5, 6),)),
        ([[5], [6, 7]], ((5,), (6, 7))),
    ],
)
def test_openai_input_shapes(wire, inputs):
    req = openai_convert.from_embedding_request(openai_s.EmbeddingRequest(model="m", input=wire))
    assert req.inputs == inputs and req.normalize and not req.truncate


def test_base64_is_little_endian_float32():
    raw = base64.b64decode(openai_convert.base64_floats([1.0, -0.5]))
    assert struct.unpack("<2f", raw) == (1.0, -0.5)


@pytest.mark.parametrize(
    ("wire", "inputs"), [(None, None), ("", None), ("a", ["a"]), (["a"], ["a"])]
)
def test_ollama_input_shapes(wire, inputs):
    assert ollama_convert.embed_inputs(ollama_s.EmbedRequest(model="m", input=wire)) == inputs
