"""The llama.cpp engine: GGUF models on the CPU (or whatever llama.cpp was built
for), with continuous batching and prefix reuse (``step``) on the shared decode
loop.

This file says what is llama.cpp's own in the asyncio face (``LocalEngine``):
how a request becomes prompt tokens (the model's own chat template, its BOS
rule), the model's family (from the GGUF's chat template and metadata) and the
sampler chain each sequence carries; and embeddings, from a second context on
the same weights (``embed``), made the first time one is asked, as is the
rank-pooling context of a reranker (``rerank``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmkit.core.types import (
    Capability,
    EngineInfo,
    GenerateRequest,
    Image,
    Message,
    RerankRequest,
    RerankResult,
    Tool,
)
from llmkit.engines import rerank
from llmkit.engines.chat_template import CHATML, render_chat
from llmkit.engines.embedding import cannot_embed
from llmkit.engines.families import Family, detect
from llmkit.engines.llamacpp.draft import SuffixIndex
from llmkit.engines.llamacpp.draft_model import DraftModel
from llmkit.engines.llamacpp.embed import EMBED_BATCH_TOKENS, EMBED_CONTEXT, Embedder
from llmkit.engines.llamacpp.model import LoadedModel, LoadOptions, amx_in_build
from llmkit.engines.llamacpp.rerank import Reranker, model_capabilities, pair_tokens
from llmkit.engines.llamacpp.sampler import Sampler
from llmkit.engines.llamacpp.step import BatchStep, SeqState
from llmkit.engines.llamacpp.vision import Projector
from llmkit.engines.local import LocalEngine
from llmkit.errors import EngineError
from llmkit.models.gguf_header import read_gguf_header
from llmkit.models.sizing import human_count

log = logging.getLogger("llmkit.engine.llamacpp")


class LlamaCppEngine(LocalEngine[LoadedModel]):
    label = "llama.cpp"

    def __init__(self, opts: LoadOptions, *, max_queue: int = 64, base: str | None = None) -> None:
        """``base``: for a LoRA adapter served under its own name, the served model
        whose weights its context shares (``weights``)."""
        super().__init__(max_queue=max_queue)
        self.opts = opts
        self.base = base
        self._embedder: Embedder | None = None  # made on the first embedding request
        self._reranker: Reranker | None = None  # made on the first rerank request
        self._capabilities: tuple[Capability, ...] = ()
        self.projector: Projector | None = None  # a vision model's, loaded with it

    def _load(self) -> tuple[LoadedModel, BatchStep]:
        if amx_in_build():
            log.warning(
                "This llama-cpp-python build has the AMX kernels, which crash on prompts of "
                "more than a few tokens (llama.cpp #20824). Rebuild it with scripts/bootstrap.sh."
            )
        lm = LoadedModel(self.opts)
        if lm.chat_template is None:
            log.warning("%s ships no chat template; using ChatML", self.opts.path)
        # llama.cpp's metadata leaves out arrays (a classifier's labels) and tensors.
        header = read_gguf_header(Path(self.opts.path))
        self._capabilities = model_capabilities(header.fields, (n for n, *_ in header.tensors))
        drafter = None
        try:
            if self.opts.mmproj:
                self.projector = Projector(
                    self.opts.mmproj, lm.model.model, lm.n_threads, lm.n_embd_input
                )
                self._capabilities = (*self._capabilities, "vision")
            if self._speculates(lm) and self.opts.speculative == "draft" and self.opts.draft_model:
                drafter = DraftModel(self.opts.draft_model, lm)
            return lm, BatchStep(lm, self.projector, drafter)
        except BaseException:
            lm.close()
            raise

    def _speculates(self, lm: LoadedModel) -> bool:
        """Speculation needs cells it can take back one by one: not where a cell is
        more than a token's K and V (a recurrent state, a sliding window)."""
        return self.opts.speculative != "off" and lm.shares_prefixes

    def find_family(self) -> Family:
        lm = self.lm
        family = gguf_family(lm.metadata)
        # Scanned now, in the loading thread, not mid-request.
        lm.trigger_hazards(tuple(family.call_triggers()))
        return family

    def _unload(self, lm: LoadedModel) -> None:
        for ctx in (self._embedder, self._reranker):  # before the model they read
            if ctx is not None:
                ctx.close()
        self._embedder = self._reranker = None
        if self.projector is not None:
            self.projector.close()
            self.projector = None
        lm.close()

    @property
    def info(self) -> EngineInfo:
        lm = self.lm
        return EngineInfo(
            engine="llama.cpp",
            model=self.opts.path,
            context_length=lm.n_ctx,
            details={
                "parallel": lm.parallel,
                "kv_cache_size": lm.kv_cells,
                "kv_host_cache_mib": lm.host_cache_bytes >> 20,
                "threads": lm.n_threads,
                "trained_context": lm.n_ctx_train,
                "speculative": self.opts.speculative if self._speculates(lm) else "off",
                "architecture": lm.metadata.get("general.architecture", "?"),
                **({"projector": self.opts.mmproj} if self.projector else {}),
                **self._lora_details(),
            },
            format="gguf",
            family=lm.metadata.get("general.architecture", ""),
            parameter_count=lm.n_params,
            parameter_size=lm.metadata.get("general.size_label") or human_count(lm.n_params),
            quantization=lm.quantization,
            size_bytes=lm.size_bytes,
            license=lm.metadata.get("general.license", ""),
            chat_template=lm.chat_template or "",
            metadata=dict(lm.metadata),
            capabilities=thinking_capability(self._capabilities, self.family),
        )

    def _lora_details(self) -> dict[str, str]:
        """What /api/show and the logs say of the LoRA adapters this context applies."""
        if not self.opts.adapters:
            return {}
        out = {
            "adapters": ", ".join(
                f"{label} ({path}, scale {scale:g})" for path, scale, label in self.opts.adapters
            )
        }
        if self.base:
            out["base_model"] = self.base
        return out

    # -- tokens ---------------------------------------------------------------------

    def tokenize_text(self, text: str, special: bool) -> list[int]:
        return self.lm.tokenize(text, add_bos=False, special=special)

    def detokenize_ids(self, ids: list[int]) -> str:
        return self.lm.detokenize(ids)

    def chat_text(
        self, messages: tuple[Message, ...], tools: tuple[Tool, ...], variables: dict[str, Any]
    ) -> str:
        lm = self.lm
        return render_chat(
            chat_template(lm.metadata, bool(tools)) or CHATML,
            messages,
            tools=tools,
            bos_token=lm.token_text(lm.bos_id),
            eos_token=lm.token_text(lm.eos_id),
            variables=variables,
        )

    def chat_text_tokens(self, text: str) -> list[int]:
        lm = self.lm
        bos = lm.token_text(lm.bos_id)
        add_bos = lm.add_bos and not (bos and text.startswith(bos))
        return lm.tokenize(text, add_bos=add_bos, special=True)

    @property
    def image_marker(self) -> str | None:
        return self.projector.marker if self.projector is not None else None

    def chat_image_tokens(self, text: str, images: list[Image]) -> list[int]:
        if self.projector is None:
            raise self.no_vision()
        lm = self.lm
        bos = lm.token_text(lm.bos_id)
        add_bos = lm.add_bos and not (bos and text.startswith(bos))
        return self.projector.tokenize(text, images, add_bos)

    def prompt_text_tokens(self, text: str) -> list[int]:
        return self.lm.tokenize(text, add_bos=self.lm.add_bos, special=True)

    def new_state(self, req: GenerateRequest, prompt: list[int], after_thinking: bool) -> SeqState:
        if "rerank" in self._capabilities:  # its head scores pairs; it has no next token
            raise rerank.cannot_generate(self.opts.path)
        lm = self.lm
        sampler = Sampler(
            req, lm.vocab, lm.n_vocab, lm.trigger_hazards, self.family, after_thinking
        )
        state = SeqState(sampler, images=getattr(prompt, "images", None) or {})
        if req.speculative is not False and self._speculates(lm):
            state.spec = True
            if self.opts.speculative == "ngram":
                # Built here, in a worker thread, not on the decode thread.
                state.index = SuffixIndex(prompt)
        return state

    def drop_state(self, state: SeqState) -> None:
        state.sampler.close()

    # -- embeddings -------------------------------------------------------------------

    @property
    def embed_context(self) -> int:
        return min(self.lm.n_ctx, EMBED_CONTEXT)

    @property
    def n_embd(self) -> int:
        return self.lm.n_embd

    def embed_text_tokens(self, text: str) -> list[int]:
        # BOS and EOS as the vocabulary asks (embedding models such as bge-m3 need
        # the EOS), as llama.cpp's server tokenizes embedding inputs.
        return self.lm.tokenize(text, add_bos=True, special=True)

    def embed_ids(self, seqs: list[list[int]]) -> list[list[float]]:
        if "rerank" in self._capabilities:  # its hidden states were trained for its head only
            raise cannot_embed(self.label, "serves this model as a reranker (/v1/rerank)")
        if self._embedder is None:
            self._embedder = Embedder(self.lm, self.embed_context)
        return self._embedder.embed(seqs)

    # -- reranking ----------------------------------------------------------------------

    async def rerank(self, req: RerankRequest) -> RerankResult:
        if "rerank" not in self._capabilities:
            raise rerank.cannot_rerank(self.label, "serves this model, which has no rank head")
        pairs = await asyncio.to_thread(
            lambda: [pair_tokens(self.lm, req.query, d) for d in req.documents]
        )
        rerank.fit_pairs(pairs, self.embed_context)
        async with self._embedding:  # one batch job at a time, and none while unloading
            if self._lm is None:
                raise EngineError("The llama.cpp engine is not started.")
            scores = await asyncio.to_thread(self._scores, pairs)
        return RerankResult(tuple(scores), prompt_tokens=sum(len(p) for p in pairs))

    def _scores(self, pairs: list[list[int]]) -> list[float]:
        if self._reranker is None:
            # Room for a batch of pairs even where one pair may hold few tokens
            # (bge-reranker-base: 512): the pairs of a batch are sequences of their own.
            self._reranker = Reranker(self.lm, max(self.embed_context, EMBED_BATCH_TOKENS))
        return self._reranker.scores(pairs)


TOOL_USE_TEMPLATE = "tokenizer.chat_template.tool_use"


def chat_template(metadata: Mapping[str, Any], tools: bool) -> str:
    """The GGUF's chat template for a request that offers tools or not: a GGUF
    may carry a second one for tools (``tokenizer.chat_template.tool_use``:
    Hermes 2 Pro and 3, Command-R), which llama.cpp uses whenever tools are
    offered; "" when it has none."""
    default = metadata.get("tokenizer.chat_template") or ""
    return (metadata.get(TOOL_USE_TEMPLATE) or default) if tools else default


def gguf_family(metadata: Mapping[str, Any]) -> Family:
    """A GGUF's model family, from its chat template and its (text) metadata. A
    GGUF with a template for tools is the family that template writes: the
    family's syntax matters only where calls are made, and there that template
    is the one in use."""
    text = {k: v for k, v in metadata.items() if isinstance(v, str)}
    return detect(chat_template(text, tools=True), text)


def thinking_capability(caps: tuple[Capability, ...], family: Family) -> tuple[Capability, ...]:
    """``caps``, and "thinking" when the family thinks (Ollama's capability)."""
    return (*caps, "thinking") if family.thinks and "thinking" not in caps else caps
