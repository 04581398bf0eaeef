"""Reranking, held to transformers: a tiny XLM-RoBERTa cross-encoder made in the
test setup (``tiny_reranker``), converted to GGUF by llama.cpp's own converter,
served by ``llmkit serve`` on llama.cpp and, the same weights, on transformers;
driven over real sockets by httpx (``/v1/rerank``, ``/rerank``), Cohere's SDK
(``/v2/rerank``) and LangChain's and LlamaIndex's ``CohereRerank``.

Tolerance: on llama.cpp, scores match transformers' first logit within 0.02
(absolute): llama.cpp's BERT graph computes GELU as the tanh approximation read
from a float16 table where transformers computes the exact (erf) one; on these
weights that moves scores of about 1 by up to 0.008 (the approximation alone,
in transformers, moves them by 0.001). On transformers, within 1e-5 (the same
code, batched otherwise). The reference scores lie more than twice the
tolerance apart, so the documents must come back in the same order too.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import cohere
import httpx
import pytest
from conftest import Server, start_server
from langchain_cohere import CohereRerank
from langchain_core.documents import Document
from tiny_reranker import (
    POSITIONS,
    Reference,
    convert,
    make_bert_cross_encoder,
    make_cross_encoder,
)

from llmkit.api.rerank import convert as rerank_convert
from llmkit.api.rerank import schemas as rerank_schemas
from llmkit.core.types import RerankRequest
from llmkit.engines.llamacpp.rerank import RERANK_TEMPLATE, pair_tokens
from llmkit.models.gguf_header import read_gguf_header

NAME = "tiny-reranker"
QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital of France.",
    "Llamas live in the Andes mountains.",
    "The cat sat on the mat.",
    "Berlin is the capital of Germany.",
    "Python is a programming language.",
    "The quick brown fox jumps over the lazy dog.",
    "Water boils at one hundred degrees.",
    "The stock market fell today.",
]
#: Enough documents that llama.cpp scores them in several batches (512 tokens each).
MANY = [f"{a} {b}" for a in DOCS for b in DOCS[:5]]
TOL = dict(abs=0.02, rel=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return make_cross_encoder(tmp_path_factory.mktemp("cross-encoder") / "tiny-reranker")


@pytest.fixture(scope="module")
def gguf(model_dir, tmp_path_factory: pytest.TempPathFactory):
    return convert(model_dir, tmp_path_factory.mktemp("gguf") / "tiny-reranker.gguf")


@pytest.fixture(scope="module")
def ref(model_dir) -> Reference:
    return Reference(model_dir)


@pytest.fixture(scope="module")
def llama(gguf, tmp_path_factory: pytest.TempPathFactory):
    """The GGUF on llama.cpp; the bundled chat model is in the catalog beside it."""
    s = start_server(
        tmp_path_factory.mktemp("rerank-llama"),
        "--model", str(gguf), "--served-model-name", NAME,
        "--threads", "1", "--max-inputs", "64",
    )  # fmt: skip
    yield s
    s.stop()


@pytest.fixture(scope="module")
def hf(model_dir, tmp_path_factory: pytest.TempPathFactory):
    s = start_server(
        tmp_path_factory.mktemp("rerank-hf"),
        "--engine", "transformers", "--model", str(model_dir),
        "--served-model-name", NAME, "--threads", "1",
    )  # fmt: skip
    yield s
    s.stop()


def rerank(s: Server, path: str = "/v1/rerank", **body: object) -> dict:
    r = httpx.post(s.url + path, json={"model": NAME, "query": QUERY, **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def by_index(results: list[dict]) -> list[float]:
    return [s for _, s in sorted((r["index"], r["relevance_score"]) for r in results)]


def best_first(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def test_reference_scores_are_far_from_ties(ref):
    """The checks below compare orders: they mean something only if no two scores
    are within twice the tolerance of each other."""
    scores = sorted(ref.scores(QUERY, DOCS))
    assert min(b - a for a, b in itertools.pairwise(scores)) > 2 * TOL["abs"]


def test_converter_writes_a_classification_head_and_no_pooling(gguf):
    """What llmkit tells a reranker GGUF by: llama.cpp's converter writes a
    sequence classifier's head (``cls``, ``cls.output``) and its labels, and
    declares no pooling type for it (llama-server needs ``--rerank``)."""
    header = read_gguf_header(gguf)
    names = {n for n, *_ in header.tensors}
    assert {"cls.weight", "cls.output.weight"} <= names
    assert header.fields["bert.classifier.output_labels"] == 1  # one label (a count here)
    assert "bert.pooling_type" not in header.fields


def test_listings_say_it_reranks(llama):
    show = httpx.post(llama.url + "/api/show", json={"model": NAME}).json()
    assert show["capabilities"] == ["rerank"]
    tags = httpx.get(llama.url + "/api/tags").json()["models"]
    caps = {m["name"]: m["capabilities"] for m in tags}
    assert caps[f"{NAME}:latest"] == ["rerank"]
    assert "rerank" not in caps["SmolLM2-135M-Instruct:latest"]


def test_a_reranker_gets_no_kv_pool_for_generation(llama):
    """It never generates: one sequence of one pair's context, not --parallel of them
    (a Qwen3-Reranker would otherwise get pools of its 40k-token training context)."""
    health = httpx.get(llama.url + "/health").json()
    kv = next(m for m in health["models"] if m["name"] == NAME)["kv_cache"]
    assert kv["used"] + kv["cached"] + kv["free"] == POSITIONS - 2


def test_llamacpp_scores_match_transformers(llama, ref):
    got = rerank(llama, documents=DOCS)
    want = ref.scores(QUERY, DOCS)
    assert by_index(got["results"]) == pytest.approx(want, **TOL)
    assert [r["index"] for r in got["results"]] == best_first(want)
    assert [r["document"]["text"] for r in got["results"]] == [DOCS[i] for i in best_first(want)]
    tokens = sum(len(ref.pair_tokens(QUERY, d)) for d in DOCS)  # the same pairs, token for token
    assert got["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert got["model"] == NAME and got["id"].startswith("rerank-")


def test_many_documents_in_one_request_score_as_one_by_one(llama, ref):
    """64 documents go through in batches; each scores as it does alone."""
    together = by_index(rerank(llama, documents=MANY[:40] + DOCS * 3)["results"])
    assert together == pytest.approx(ref.scores(QUERY, MANY[:40] + DOCS * 3), **TOL)
    alone = [rerank(llama, documents=[d])["results"][0]["relevance_score"] for d in DOCS]
    assert together[40:48] == pytest.approx(alone, abs=1e-4)


def test_top_n_return_documents_and_text_objects(llama, ref):
    want = best_first(ref.scores(QUERY, DOCS))
    got = rerank(
        llama, "/rerank", documents=[{"text": d} for d in DOCS], top_n=3, return_documents=False
    )
    assert [r["index"] for r in got["results"]] == want[:3]
    assert all("document" not in r for r in got["results"])
    assert len(rerank(llama, documents=DOCS, top_n=100)["results"]) == len(DOCS)
    assert len(rerank(llama, documents=DOCS, top_n=0)["results"]) == len(DOCS)  # vLLM's "all"


def test_cohere_sdk(llama, ref):
    co = cohere.ClientV2(api_key="unused", base_url=llama.url)
    got = co.rerank(model=NAME, query=QUERY, documents=DOCS, top_n=4)
    want = ref.scores(QUERY, DOCS)
    assert [r.index for r in got.results] == best_first(want)[:4]
    for r in got.results:
        assert r.relevance_score == pytest.approx(want[r.index], **TOL)
    tokens = sum(len(ref.pair_tokens(QUERY, d)) for d in DOCS)
    assert got.meta.tokens.input_tokens == tokens


def test_cohere_sdk_v1_client(llama, ref):
    """Cohere's v1 rerank is the same request at /v1/rerank; its client reads our answer."""
    co = cohere.Client(api_key="unused", base_url=llama.url)
    got = co.rerank(model=NAME, query=QUERY, documents=DOCS, top_n=3, return_documents=True)
    want = ref.scores(QUERY, DOCS)
    assert [r.index for r in got.results] == best_first(want)[:3]
    assert [r.document.text for r in got.results] == [DOCS[i] for i in best_first(want)[:3]]


def test_langchain_cohere_rerank(llama, ref):
    reranker = CohereRerank(model=NAME, base_url=llama.url, cohere_api_key="unused", top_n=3)
    docs = [Document(page_content=d, metadata={"n": i}) for i, d in enumerate(DOCS)]
    kept = reranker.compress_documents(docs, QUERY)
    want = ref.scores(QUERY, DOCS)
    assert [d.metadata["n"] for d in kept] == best_first(want)[:3]
    for d in kept:
        assert d.metadata["relevance_score"] == pytest.approx(want[d.metadata["n"]], **TOL)


def test_llamaindex_cohere_rerank(llama, ref):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank as LlamaIndexCohereRerank

    reranker = LlamaIndexCohereRerank(model=NAME, base_url=llama.url, api_key="unused", top_n=3)
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(DOCS)]
    kept = reranker.postprocess_nodes(nodes, QueryBundle(QUERY))
    want = ref.scores(QUERY, DOCS)
    assert [int(n.node.id_) for n in kept] == best_first(want)[:3]
    for n in kept:
        assert n.score == pytest.approx(want[int(n.node.id_)], **TOL)


def test_transformers_engine_gives_the_same_scores(hf, ref):
    got = rerank(hf, documents=MANY)  # 40: two batches of at most 32
    assert by_index(got["results"]) == pytest.approx(ref.scores(QUERY, MANY), abs=1e-5, rel=1e-5)
    show = httpx.post(hf.url + "/api/show", json={"model": NAME}).json()
    assert show["capabilities"] == ["rerank"]
    chat = httpx.post(
        hf.v1 + "/chat/completions",
        json={"model": NAME, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 400 and "reranker" in chat.json()["error"]["message"]


def test_transformers_engine_gives_a_bert_cross_encoder_its_segment_ids(tmp_path):
    """ms-marco-MiniLM's architecture: BERT reads the query as segment 0 and the
    document as segment 1; scores match only if the engine passes them."""
    bert = make_bert_cross_encoder(tmp_path / "tiny-bert-reranker")
    want = Reference(bert).scores(QUERY, DOCS)
    s = start_server(
        tmp_path / "serve", "--engine", "transformers", "--model", str(bert),
        "--served-model-name", NAME, "--threads", "1",
    )  # fmt: skip
    try:
        got = by_index(rerank(s, documents=DOCS)["results"])
    finally:
        s.stop()
    assert got == pytest.approx(want, abs=1e-5, rel=1e-5)


@pytest.mark.parametrize(
    ("scores", "top_n", "order"),
    [
        ((0.1, 0.9, 0.5), None, [(1, 0.9), (2, 0.5), (0, 0.1)]),
        ((0.1, 0.9, 0.5), 2, [(1, 0.9), (2, 0.5)]),
        ((0.1, 0.9, 0.5), 0, [(1, 0.9), (2, 0.5), (0, 0.1)]),  # vLLM's "all"
        ((0.1, 0.9, 0.5), 9, [(1, 0.9), (2, 0.5), (0, 0.1)]),
        ((-1.0, 2.0, -1.0, 2.0), None, [(1, 2.0), (3, 2.0), (0, -1.0), (2, -1.0)]),  # ties
    ],
)
def test_results_are_best_first_and_cut_to_top_n(scores, top_n, order):
    assert rerank_convert.ranked(scores, top_n) == order


def test_documents_as_texts_or_objects():
    body = rerank_schemas.RerankRequest(model="m", query="q", documents=["a", {"text": "b"}])
    assert rerank_convert.to_core(body.query, body.documents) == RerankRequest("q", ("a", "b"))


# -- bad input: a 400 in the dialect's shape ----------------------------------------


def post(s: Server, path: str, **body: object) -> httpx.Response:
    return httpx.post(s.url + path, json={"model": NAME, "query": QUERY, **body}, timeout=60)


def test_no_documents(llama):
    r = post(llama, "/v1/rerank", documents=[])
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "documents" and "empty" in r.json()["error"]["message"]
    r = post(llama, "/v2/rerank", documents=[])
    assert r.status_code == 400 and "empty" in r.json()["message"]  # Cohere's shape
    with pytest.raises(cohere.BadRequestError, match="empty"):
        cohere.ClientV2(api_key="unused", base_url=llama.url).rerank(
            model=NAME, query=QUERY, documents=[]
        )


def test_too_many_documents(llama):
    r = post(llama, "/v1/rerank", documents=["a"] * 65)
    assert r.status_code == 400
    err = r.json()["error"]
    assert (
        err["param"] == "documents" and "65" in err["message"] and "--max-inputs" in err["message"]
    )


@pytest.mark.parametrize("server", ["llama", "hf"])
def test_too_long_a_document(server, request, ref):
    s = request.getfixturevalue(server)
    long = "The cat sat on the mat. " * 40
    n = len(ref.pair_tokens(QUERY, long))
    assert n > POSITIONS - 2
    r = post(s, "/v1/rerank", documents=["Paris is the capital of France.", long])
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "documents[1]" in msg and f"{n} tokens" in msg and f"{POSITIONS - 2} tokens" in msg


def test_a_model_that_cannot_rerank_names_those_that_can(llama):
    r = httpx.post(
        llama.url + "/v1/rerank",
        json={"model": "SmolLM2-135M-Instruct", "query": "q", "documents": ["d"]},
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "model" and "cannot rerank" in err["message"] and NAME in err["message"]
    r = httpx.post(
        llama.url + "/v2/rerank",
        json={"model": "SmolLM2-135M-Instruct", "query": "q", "documents": ["d"]},
    )
    assert r.status_code == 400 and NAME in r.json()["message"]


def test_a_reranker_generates_no_text_and_embeds_nothing(llama):
    chat = httpx.post(
        llama.v1 + "/chat/completions",
        json={"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    )
    assert chat.status_code == 400 and "reranker" in chat.json()["error"]["message"]
    emb = httpx.post(llama.v1 + "/embeddings", json={"model": NAME, "input": "hi"})
    assert emb.status_code == 400 and "reranker" in emb.json()["error"]["message"]


def test_a_models_own_rerank_prompt_is_filled_in_and_read_with_its_special_tokens():
    """Qwen3-Reranker's way (GGUF ``tokenizer.chat_template.rerank``), as llama-server
    builds it: ``{query}`` and ``{document}`` replaced, then tokenized as it stands,
    special tokens parsed and none added."""
    calls = []

    class Stub:  # what pair_tokens reads of a loaded model
        def __init__(self) -> None:
            self.metadata = {RERANK_TEMPLATE: "<|im_start|>q: {query}\nd: {document}<|im_end|>"}

        def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
            calls.append((text, add_bos, special))
            return [1, 2, 3]

    assert pair_tokens(Stub(), "who?", "me") == [1, 2, 3]  # type: ignore[arg-type]
    assert calls == [("<|im_start|>q: who?\nd: me<|im_end|>", False, True)]


def test_an_unknown_model_is_404_in_cohere_shape(llama):
    r = httpx.post(
        llama.url + "/v2/rerank", json={"model": "nope", "query": "q", "documents": ["d"]}
    )
    assert r.status_code == 404 and "nope" in r.json()["message"]


# -- the guide's examples, run as written ---------------------------------------------

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "rerank.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=["httpx", "cohere"])
def test_each_guide_example_prints_what_it_says(llama, code):
    """Against the tiny reranker; each prints what holds for any reranker."""
    assert "# prints: " in code and "127.0.0.1:8000" in code and '"bge-reranker"' in code
    claimed = code.split("# prints: ", 1)[1].splitlines()[0].strip()
    code = code.replace("http://127.0.0.1:8000", llama.url).replace('"bge-reranker"', f'"{NAME}"')
    out = subprocess.check_output([sys.executable, "-c", code], text=True, timeout=120)
    assert out.strip() == claimed
