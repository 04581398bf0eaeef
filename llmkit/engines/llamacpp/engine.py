"""The llama.cpp engine: GGUF models on the CPU (or whatever llama.cpp was built
for), with continuous batching and prefix reuse (``step``) on the shared decode
loop.

This file says what is llama.cpp's own in the asyncio face (``LocalEngine``):
how a request becomes prompt tokens (the model's own chat template, its BOS
rule), the model's family (from the GGUF's chat template and metadata) and the
sampler chain each sequence carries; and embeddings, from a second context on
the same weights (``embed``), made the first time one is asked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from llmkit.core.types import Capability, EngineInfo, GenerateRequest, Message, Tool
from llmkit.engines.chat_template import CHATML, render_chat
from llmkit.engines.families import Family, detect
from llmkit.engines.llamacpp.embed import EMBED_CONTEXT, Embedder, capabilities
from llmkit.engines.llamacpp.model import LoadedModel, LoadOptions, amx_in_build
from llmkit.engines.llamacpp.sampler import Sampler
from llmkit.engines.llamacpp.step import BatchStep, SeqState
from llmkit.engines.local import LocalEngine
from llmkit.models.sizing import human_count

log = logging.getLogger("llmkit.engine.llamacpp")


class LlamaCppEngine(LocalEngine[LoadedModel]):
    label = "llama.cpp"

    def __init__(self, opts: LoadOptions, *, max_queue: int = 64) -> None:
        super().__init__(max_queue=max_queue)
        self.opts = opts
        self._embedder: Embedder | None = None  # made on the first embedding request

    def _load(self) -> tuple[LoadedModel, BatchStep]:
        if amx_in_build():
            log.warning(
                "This llama-cpp-python build has the AMX kernels, which crash on prompts of "
                "more than a few tokens (llama.cpp #20824). Rebuild it with scripts/bootstrap.sh."
            )
        lm = LoadedModel(self.opts)
        if lm.chat_template is None:
            log.warning("%s ships no chat template; using ChatML", self.opts.path)
        return lm, BatchStep(lm)

    def find_family(self) -> Family:
        lm = self.lm
        family = gguf_family(lm.metadata)
        # Scanned now, in the loading thread, not mid-request.
        lm.trigger_hazards(tuple(family.call_triggers()))
        return family

    def _unload(self, lm: LoadedModel) -> None:
        if self._embedder is not None:  # before the model it reads
            self._embedder.close()
            self._embedder = None
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
                "architecture": lm.metadata.get("general.architecture", "?"),
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
            capabilities=thinking_capability(capabilities(lm.metadata), self.family),
        )

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
            lm.chat_template or CHATML,
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

    def prompt_text_tokens(self, text: str) -> list[int]:
        return self.lm.tokenize(text, add_bos=self.lm.add_bos, special=True)

    def new_state(self, req: GenerateRequest, prompt: list[int], after_thinking: bool) -> SeqState:
        lm = self.lm
        sampler = Sampler(
            req, lm.vocab, lm.n_vocab, lm.trigger_hazards, self.family, after_thinking
        )
        return SeqState(sampler)

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
        if self._embedder is None:
            self._embedder = Embedder(self.lm, self.embed_context)
        return self._embedder.embed(seqs)


def gguf_family(metadata: Mapping[str, Any]) -> Family:
    """A GGUF's model family, from its chat template and its (text) metadata."""
    text = {k: v for k, v in metadata.items() if isinstance(v, str)}
    return detect(text.get("tokenizer.chat_template", ""), text)


def thinking_capability(caps: tuple[Capability, ...], family: Family) -> tuple[Capability, ...]:
    """``caps``, and "thinking" when the family thinks (Ollama's capability)."""
    return (*caps, "thinking") if family.thinks and "thinking" not in caps else caps
