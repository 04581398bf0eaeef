"""Reranking with a GGUF cross-encoder (bge-reranker, jina-reranker, Qwen3-Reranker):
which GGUFs are rerankers, how a (query, document) pair becomes tokens, and the
rank-pooling context that scores the pairs.

llama.cpp's server is the reference for all three (``--rerank``): a pair is
``BOS query EOS SEP document EOS`` (each special token where the vocabulary says
it adds one, SEP standing in for a missing EOS), or the model's own rerank
prompt (GGUF ``tokenizer.chat_template.rerank``, Qwen3-Reranker's) with
``{query}`` and ``{document}`` filled in; the score is the first value rank
pooling gives for the pair: the classification head's raw output on the first
token (a BERT / XLM-RoBERTa cross-encoder's logit), or, for Qwen3, the head's
softmax over its labels, as llama.cpp's graph computes it. No activation is
added on top, as llama-server adds none.

A GGUF is a reranker when its header declares rank pooling (the converter writes
it for Qwen3-Reranker) or when it carries a classification head: the converter
writes a ``*ForSequenceClassification`` model's head as ``cls.output`` (and its
labels), but declares no pooling for it; llama-server is told ``--rerank``.

Pairs go through one ``llama_batch`` per group, one sequence each, in one
micro-batch (rank pooling reads a whole sequence), as embeddings do (``embed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import llama_cpp

from llmkit.core.types import Capability
from llmkit.engines.llamacpp.embed import Embedder, capabilities, declared_pooling
from llmkit.engines.llamacpp.model import LoadedModel

#: The tensor llama.cpp's converter writes a sequence classifier's output layer as.
HEAD_TENSORS = ("cls.output.weight",)
#: Where a model keeps its own rerank prompt (llama.cpp's named chat template "rerank").
RERANK_TEMPLATE = "tokenizer.chat_template.rerank"


def is_reranker(fields: Mapping[str, Any], tensors: Iterable[str] = ()) -> bool:
    """From a GGUF's key/values (llama.cpp's metadata, or the header read before
    loading) and, where known, its tensor names."""
    if declared_pooling(fields) == llama_cpp.LLAMA_POOLING_TYPE_RANK:
        return True
    arch = fields.get("general.architecture") or "llama"
    if f"{arch}.classifier.output_labels" in fields:
        return True
    return any(name in HEAD_TENSORS for name in tensors)


def model_capabilities(
    fields: Mapping[str, Any], tensors: Iterable[str] = ()
) -> tuple[Capability, ...]:
    """What listings say a GGUF can do: a reranker only reranks (its head gives a
    score, not next tokens); any other as ``embed.capabilities`` says."""
    return ("rerank",) if is_reranker(fields, tensors) else capabilities(fields)


def pair_tokens(lm: LoadedModel, query: str, document: str) -> list[int]:
    """The tokens of one (query, document) pair, as llama-server builds them."""
    template = lm.metadata.get(RERANK_TEMPLATE)
    if template:
        text = template.replace("{query}", query).replace("{document}", document)
        return lm.tokenize(text, add_bos=False, special=True)
    vocab = lm.vocab
    q = lm.tokenize(query, add_bos=False, special=False)
    d = lm.tokenize(document, add_bos=False, special=False)
    eos = llama_cpp.llama_vocab_eos(vocab)
    sep = llama_cpp.llama_vocab_sep(vocab)
    if eos < 0:  # LLAMA_TOKEN_NULL
        eos = sep
    add_eos = bool(llama_cpp.llama_vocab_get_add_eos(vocab))
    ids = [lm.bos_id] if llama_cpp.llama_vocab_get_add_bos(vocab) else []
    ids += q
    if add_eos:
        ids.append(eos)
    if llama_cpp.llama_vocab_get_add_sep(vocab):
        ids.append(sep)
    ids += d
    if add_eos:
        ids.append(eos)
    return ids


class Reranker(Embedder):
    """The rank-pooling context of a loaded reranker: one score per pair. Not
    thread-safe: one thread at a time."""

    def __init__(self, lm: LoadedModel, n_ctx: int) -> None:
        super().__init__(lm, n_ctx, pooling=llama_cpp.LLAMA_POOLING_TYPE_RANK, n_out=1)

    def scores(self, pairs: list[list[int]]) -> list[float]:
        return [float(v[0]) for v in self.embed(pairs)]
