"""Embeddings from the weights chat already loaded: a second ``llama_context`` on
the same ``llama_model``, with embeddings on, made on first use.

llama.cpp's own server cannot serve chat and embeddings from one process
(llama.cpp #11199): its one context is either generating or embedding. Weights
in llama.cpp belong to the model, not to a context, so a second context costs
only its own KV cache and compute buffer, and the two run side by side.

Pooling is the model's own when its GGUF declares one (``<arch>.pooling_type``:
nomic-embed-text and bge say mean or CLS, Qwen3-Embedding says last); a chat
model declares none and gets the mean of its last hidden states. Several inputs
go through one ``llama_batch``, one sequence id each, all in one micro-batch so
that each sequence is pooled whole; the pooled vector of each comes back from
``llama_get_embeddings_seq``.
"""

from __future__ import annotations

from collections.abc import Mapping

import llama_cpp

from llmkit.core.types import Capability
from llmkit.engines.embedding import cannot_embed, pack
from llmkit.engines.llamacpp.model import LoadedModel, batch_put
from llmkit.engines.llamacpp.weights import set_adapters
from llmkit.errors import EngineError

#: Tokens one embedding batch (and so one input) may hold at most. Each token of a
#: batch carries the model's whole output row in the compute buffer (llama.cpp
#: computes logits for every token when embedding), so this bounds its memory:
#: about 400 MiB for a 49k vocabulary.
EMBED_CONTEXT = 2048
#: Inputs decoded together in one batch at most.
EMBED_SEQS = 64
#: Tokens packed into one batch of several inputs (a longer input goes alone). In
#: one batch every token's attention spans the whole batch, masked, so packing far
#: more costs more than it saves: on 2 cores, 64 short inputs took 3x less time in
#: batches of 16-32 than one by one, and more again when all 64 went in one batch.
EMBED_BATCH_TOKENS = 512


def declared_pooling(metadata: Mapping[str, object]) -> int | None:
    """The pooling type the GGUF header declares, or None. Values are text in
    llama.cpp's metadata and numbers in the header read before loading."""
    arch = metadata.get("general.architecture") or "llama"
    value = str(metadata.get(f"{arch}.pooling_type", ""))
    return int(value) if value.lstrip("-").isdigit() else None


def pooling_for(metadata: Mapping[str, object]) -> int:
    """The pooling the embedding context runs with: the model's own, or mean for a
    model that declares none (a decoder model such as the bundled one)."""
    declared = declared_pooling(metadata)
    if declared == llama_cpp.LLAMA_POOLING_TYPE_RANK:
        raise cannot_embed("llama.cpp", "serves this model as a reranker (its pooling is rank)")
    if declared is None or declared == llama_cpp.LLAMA_POOLING_TYPE_NONE:
        return llama_cpp.LLAMA_POOLING_TYPE_MEAN
    return declared


def capabilities(metadata: Mapping[str, object]) -> tuple[Capability, ...]:
    """As Ollama reads them: a model that declares a pooling type is an embedding
    model; any other generates, and here embeds too (mean pooling). A reranker
    does neither."""
    declared = declared_pooling(metadata)
    if declared == llama_cpp.LLAMA_POOLING_TYPE_RANK:
        return ()
    if declared is not None and declared != llama_cpp.LLAMA_POOLING_TYPE_NONE:
        return ("embedding",)
    return ("completion", "embedding")


class Embedder:
    """The embedding context of a loaded model. Not thread-safe: one thread at a time."""

    def __init__(
        self, lm: LoadedModel, n_ctx: int, *, pooling: int | None = None, n_out: int | None = None
    ) -> None:
        """``pooling``, ``n_out``: another pooling than the model's own and the size of
        what it gives per sequence (rank pooling gives the head's outputs: ``rerank``)."""
        self.lm = lm
        self.n_ctx = n_ctx
        self.pooling = pooling_for(lm.metadata) if pooling is None else pooling
        self.n_embd = lm.n_embd if n_out is None else n_out
        p = llama_cpp.llama_context_default_params()
        # One micro-batch per batch: a sequence split across two would be pooled in halves.
        p.n_ctx = p.n_batch = p.n_ubatch = n_ctx
        p.n_seq_max = EMBED_SEQS
        p.kv_unified = True  # the sequences of a batch share the cells
        p.embeddings = True
        p.pooling_type = self.pooling
        p.n_threads = p.n_threads_batch = lm.n_threads
        p.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(lm.model.model, p)
        if not self.ctx:
            raise EngineError(f"llama.cpp could not create an embedding context of {n_ctx} tokens.")
        if lm.lora:  # an adapter's model embeds through its adapter, as it generates
            set_adapters(self.ctx, lm.lora)
        self.memory = llama_cpp.llama_get_memory(self.ctx)  # NULL for encoder-only models
        self._batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)

    def embed(self, seqs: list[list[int]]) -> list[list[float]]:
        out: list[list[float]] = []
        # A context smaller than a batch (a model trained on 128 tokens) holds fewer.
        room = min(EMBED_BATCH_TOKENS, self.n_ctx)
        for group in pack([len(s) for s in seqs], room, EMBED_SEQS):
            out.extend(self._decode([seqs[i] for i in group]))
        return out

    def _decode(self, seqs: list[list[int]]) -> list[list[float]]:
        batch, n = self._batch, 0
        for seq_id, ids in enumerate(seqs):
            for pos, token in enumerate(ids):
                batch_put(batch, n, token, pos, seq_id, True)  # every token pools
                n += 1
        batch.n_tokens = n
        if self.memory:  # nothing of the last batch may leak into this one
            llama_cpp.llama_memory_clear(self.memory, True)
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama.cpp could not embed (llama_decode returned {rc}).")
        vectors = []
        for seq_id in range(len(seqs)):
            ptr = llama_cpp.llama_get_embeddings_seq(self.ctx, seq_id)
            if not ptr:
                raise EngineError("llama.cpp returned no embedding for a sequence.")
            vectors.append(ptr[: self.n_embd])
        return vectors

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
