"""Load a GGUF into llama.cpp and answer questions about it: tokens, pieces,
metadata, the chat template it ships.

The KV cache is one pool of ``kv_cells`` cells (llama.cpp's unified cache, where
a cell can belong to several sequences; ``kv_pool`` manages it), by default
``parallel`` x ``n_ctx`` of them: sequences take cells as they grow, share the
cells of a common prefix, and ``n_ctx`` bounds each one. Both are decided before
loading, by the fit check that also sized the memory
(``models.sizing.serving_context``), so the engine loads with exactly what the
check counted.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llama_cpp
from llama_cpp import _internals, _logger

from llmkit.engines.llamacpp.build_info import packed_attention
from llmkit.engines.llamacpp.grammar import trigger_hazards
from llmkit.engines.llamacpp.weights import SharedWeights, set_adapters
from llmkit.errors import EngineError

log = logging.getLogger("llmkit.engine.llamacpp")

#: Default n_batch: how many prompt tokens one decode step takes at most.
N_BATCH = 512
#: Sequence ids llama.cpp allows (LLAMA_MAX_SEQ).
LANES_MAX = 256
#: The KV cells' type (``ggml_type``): F16 under llmkit's attention kernel; a build
#: without it (``build_info.packed_attention``) takes Q8_0, whose attention path
#: llama.cpp's stock kernels run the same for every batch shape.
KV_F16, KV_Q8_0 = 1, 8


@dataclass(frozen=True)
class LoadOptions:
    path: str
    n_ctx: int  # per sequence: what the fit check chose (``models.sizing.serving_context``)
    n_threads: int | None = None
    parallel: int = 1
    kv_cells: int | None = None  # the KV pool; None: parallel x n_ctx
    host_cache_mib: int = 8192  # host memory for sequences evicted from the pool; 0: none
    on_progress: Callable[[float], None] | None = None
    # Weights shared with the other served models on the same GGUF (``weights``);
    # None: this engine's own.
    weights: SharedWeights | None = None
    # LoRA adapters this context applies: (GGUF path, scale, how to name it)
    adapters: tuple[tuple[str, float, str], ...] = ()
    # A vision model's projector (an mmproj GGUF): images are encoded with it.
    mmproj: str | None = None
    # Speculative decoding: "ngram" (drafts from each sequence's own text), "draft"
    # (from ``draft_model``, a small GGUF of the same tokenizer) or "off".
    speculative: str = "ngram"
    draft_model: str | None = None


class LoadedModel:
    """A llama.cpp model and its context. Not thread-safe: one thread drives it."""

    def __init__(self, opts: LoadOptions) -> None:
        _logger.set_verbose(False)
        if not os.path.isfile(opts.path):
            raise EngineError(f"Model file not found: {opts.path}")
        mparams = llama_cpp.llama_model_default_params()
        self._progress_cb = _progress_callback(opts.on_progress)
        if self._progress_cb is not None:
            mparams.progress_callback = self._progress_cb
        self.weights = opts.weights or SharedWeights(opts.path)

        def load() -> _internals.LlamaModel:
            try:
                return _internals.LlamaModel(path_model=opts.path, params=mparams, verbose=False)
            except ValueError as e:
                raise EngineError(f"llama.cpp could not load {opts.path}: {e}") from e

        self.model = self.weights.acquire(load)
        try:
            self._init_context(opts)
        except BaseException:
            self.weights.release()
            raise

    def _init_context(self, opts: LoadOptions) -> None:
        self.vocab = self.model.vocab
        self.metadata = self.model.metadata()
        self.parallel = max(1, opts.parallel)
        self.n_ctx = n_ctx = opts.n_ctx
        self.n_threads = opts.n_threads or default_threads()

        self.kv_cells = opts.kv_cells or n_ctx * self.parallel
        if self.kv_cells < n_ctx:
            raise EngineError(
                f"A KV cache of {self.kv_cells} tokens cannot hold one sequence of the "
                f"{n_ctx}-token context; give --kv-cache-size at least {n_ctx}."
            )
        self.host_cache_bytes = max(0, opts.host_cache_mib) << 20
        self.adapters = tuple(label for _, _, label in opts.adapters)
        # The adapters with their scales (loaded once on the weights), for this context
        # and any other made on the model for it: the adapter's model embeds with it.
        self.lora = [(self.weights.adapter(p, label), s) for p, s, label in opts.adapters]
        # Sequence ids beyond the running ones keep finished sequences' cells as cache.
        self.lanes = min(LANES_MAX, max(4 * self.parallel, 64))
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self.kv_cells
        cparams.n_seq_max = self.lanes
        cparams.kv_unified = True
        # The patched kernel reads only a sequence's own cells and sums them so that
        # where they sit in the pool, and what is batched alongside, change nothing.
        # Stock llama.cpp walks every cell of the pool and, on f16 cells, takes a
        # different path for a lone row than for a batch: there 8-bit cells keep one.
        self.kv_type = KV_F16 if packed_attention() else KV_Q8_0
        if self.kv_type != KV_F16:
            log.warning(
                "llama.cpp was built without llmkit's attention kernel: the KV pool uses "
                "8-bit cells, and attention costs what the whole pool holds; "
                "scripts/bootstrap.sh builds it with the kernel (llmkit doctor checks)"
            )
        cparams.type_k = cparams.type_v = self.kv_type
        # the kernel is flash attention's (and 8-bit V needs it)
        cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cparams.n_batch = N_BATCH
        cparams.n_ubatch = N_BATCH
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model.model, cparams)
        if not self.ctx:
            raise EngineError(
                f"llama.cpp could not create a KV cache of {self.kv_cells} tokens; lower "
                "--kv-cache-size, --max-model-len or --parallel."
            )
        if self.lora:
            try:
                set_adapters(self.ctx, self.lora)
            except BaseException:
                llama_cpp.llama_free(self.ctx)
                self.ctx = None
                raise
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.bos_id = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos_id = llama_cpp.llama_vocab_eos(self.vocab)
        self._scanned: dict[str, tuple[int, ...]] = {}  # trigger_hazards, by trigger

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        self.weights.release()  # the weights go when no other context holds them

    # -- tokens ---------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self.model.tokenize(text.encode("utf-8"), add_bos, special)

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes one token contributes to the output text (none for control
        tokens, unless ``special``: their text, as a family's markers are read)."""
        # A buffer per call: the decode thread and the event loop both ask for pieces.
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:  # a piece longer than the buffer
            big = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, big, -n, 0, special)
            return big.raw[:n]
        return buf.raw[:n]

    def detokenize(self, ids: list[int]) -> str:
        return b"".join(self.piece(t) for t in ids).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def trigger_hazards(self, triggers: tuple[str, ...]) -> tuple[int, ...]:
        """Tokens a lazy grammar with these triggers must never sample
        (``grammar.trigger_hazards``); a scan of the vocabulary (a fraction of a
        second) per trigger, which the engine makes for its family's as it loads."""
        new = [t for t in dict.fromkeys(triggers) if t not in self._scanned]
        if new:
            # As the grammar reads them: control tokens with their text. Read once
            # for all of a family's triggers.
            pieces = [
                (t, self.piece(t, special=True).decode("utf-8", errors="replace"))
                for t in range(self.n_vocab)
            ]
            for trigger in new:
                self._scanned[trigger] = tuple(trigger_hazards(pieces, trigger))
        return tuple(sorted({t for trigger in triggers for t in self._scanned[trigger]}))

    def token_text(self, token: int) -> str:
        """A token's text including control tokens, as templates write them."""
        if token < 0:
            return ""
        return self.model.token_get_text(token)

    # -- facts ------------------------------------------------------------------

    @property
    def shares_prefixes(self) -> bool:
        """Can sequences share cells? Not where a cell is more than a token's K and V:
        a recurrent state, or a sliding window that drops a sequence's old cells."""
        m = self.model.model
        return not (
            llama_cpp.llama_model_is_recurrent(m)
            or llama_cpp.llama_model_is_hybrid(m)
            or llama_cpp.llama_model_n_swa(m) > 0
        )

    @property
    def n_ctx_train(self) -> int:
        return self.model.n_ctx_train()

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    @property
    def add_bos(self) -> bool:
        return bool(self.model.add_bos_token())

    @property
    def n_embd(self) -> int:
        """The size of the vectors an embedding context returns (a model with an
        output projection returns fewer than its hidden size)."""
        n_embd_out = getattr(llama_cpp, "llama_model_n_embd_out", llama_cpp.llama_model_n_embd)
        return int(n_embd_out(self.model.model))

    @property
    def n_embd_input(self) -> int:
        """The size of an input embedding row (what an image's projector yields per
        position): llama.cpp's ``n_embd_inp``, the hidden size where it has none."""
        n_inp = getattr(llama_cpp, "llama_model_n_embd_inp", llama_cpp.llama_model_n_embd)
        return int(n_inp(self.model.model))

    @property
    def n_params(self) -> int:
        return int(llama_cpp.llama_model_n_params(self.model.model))

    @property
    def size_bytes(self) -> int:
        return int(llama_cpp.llama_model_size(self.model.model))

    @property
    def quantization(self) -> str:
        """The weights' type as llama.cpp names it ("Q4_1", "F16"): the last word of
        its model description ("llama 256M Q4_1")."""
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.model.model, buf, len(buf))
        return buf.value.decode("utf-8", errors="replace").rsplit(" ", 1)[-1]


def batch_put(batch: Any, i: int, token: int, pos: int, seq_id: int, output: bool) -> None:
    """Write token ``i`` of a ``llama_batch``: one sequence id, output wanted or not."""
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq_id
    batch.logits[i] = output


def default_threads() -> int:
    """Physical-core count is what llama.cpp runs best with; affinity is what we may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _progress_callback(fn: Callable[[float], None] | None):  # type: ignore[no-untyped-def]
    if fn is None:
        return None

    def cb(progress: float, _user: ctypes.c_void_p) -> bool:
        fn(float(progress))
        return True

    return llama_cpp.llama_progress_callback(cb)


def amx_in_build() -> bool:
    """True when this llama.cpp build runs the AMX kernels that crash (llama.cpp #20824)."""
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    return "AMX_INT8 = 1" in info
