"""The llama.cpp engine: GGUF models on the CPU (or whatever llama.cpp was built
for), with continuous batching and prefix reuse from ``scheduler``.

This file is the asyncio side: it turns a ``GenerateRequest`` into prompt tokens
(the model's own chat template), checks the context budget, and relays the
scheduler thread's chunks to the awaiting coroutine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from llmkit.core.types import Chunk, EngineInfo, GenerateRequest
from llmkit.engines.base import Engine, check_token_ids, relay, reply_budget
from llmkit.engines.chat_template import CHATML, render_chat
from llmkit.engines.llamacpp.model import LoadedModel, LoadOptions, amx_in_build
from llmkit.engines.llamacpp.sampler import Sampler
from llmkit.engines.llamacpp.scheduler import Scheduler, Sequence
from llmkit.engines.textstream import TextStream
from llmkit.errors import EngineError, InvalidRequestError, LlmkitError

log = logging.getLogger("llmkit.engine.llamacpp")


class LlamaCppEngine(Engine):
    def __init__(self, opts: LoadOptions, *, max_queue: int = 64) -> None:
        self.opts = opts
        self.max_queue = max_queue
        self._lm: LoadedModel | None = None
        self._sched: Scheduler | None = None

    async def start(self) -> None:
        if amx_in_build():
            log.warning(
                "This llama-cpp-python build has the AMX kernels, which crash on prompts of "
                "more than a few tokens (llama.cpp #20824). Rebuild it with scripts/bootstrap.sh."
            )
        self._lm = await asyncio.to_thread(LoadedModel, self.opts)
        if self._lm.chat_template is None:
            log.warning("%s ships no chat template; using ChatML", self.opts.path)
        self._sched = Scheduler(self._lm, max_queue=self.max_queue)

    async def close(self) -> None:
        if self._sched is not None:
            await asyncio.to_thread(self._sched.close)
            self._sched = None
        if self._lm is not None:
            self._lm.close()
            self._lm = None

    def load(self) -> tuple[int, int]:
        return self._sched.load if self._sched else (0, 0)

    def finish_all(self) -> int:
        return self._sched.finish_all() if self._sched else 0

    @property
    def lm(self) -> LoadedModel:
        if self._lm is None:
            raise EngineError("The llama.cpp engine is not started.")
        return self._lm

    @property
    def info(self) -> EngineInfo:
        lm = self.lm
        return EngineInfo(
            engine="llama.cpp",
            model=self.opts.path,
            context_length=lm.n_ctx,
            details={
                "parallel": lm.parallel,
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
        )

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.lm.tokenize(text, add_bos=False, special=special)

    async def detokenize(self, ids: list[int]) -> str:
        self._check_ids(ids, "tokens")
        return self.lm.detokenize(ids)

    # -- generation ---------------------------------------------------------------

    async def encode(self, req: GenerateRequest) -> list[int]:
        return self.prompt_tokens(req)

    def prompt_tokens(self, req: GenerateRequest) -> list[int]:
        lm = self.lm
        if req.messages is not None:
            bos = lm.token_text(lm.bos_id)
            text = render_chat(
                lm.chat_template or CHATML,
                req.messages,
                bos_token=bos,
                eos_token=lm.token_text(lm.eos_id),
            )
            add_bos = lm.add_bos and not (bos and text.startswith(bos))
            return lm.tokenize(text, add_bos=add_bos, special=True)
        if isinstance(req.prompt, tuple):
            self._check_ids(list(req.prompt), "prompt")
            return list(req.prompt)
        assert req.prompt is not None
        return lm.tokenize(req.prompt, add_bos=lm.add_bos, special=True)

    def _budget(self, n_prompt: int, max_tokens: int | None, limit: int | None) -> int:
        return reply_budget(n_prompt, max_tokens, self.lm.n_ctx, limit)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        if self._sched is None:
            raise EngineError("The llama.cpp engine is not started.")
        prompt = self.prompt_tokens(req)
        if not prompt:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        max_tokens = self._budget(len(prompt), req.max_tokens, req.context_limit)
        queue: asyncio.Queue[Chunk | LlmkitError | None] = asyncio.Queue()
        seq = Sequence(
            prompt=prompt,
            sampler=Sampler(req.sampling, self.lm.vocab, self.lm.n_vocab),
            max_tokens=max_tokens,
            text=TextStream(req.stop),
            loop=asyncio.get_running_loop(),
            queue=queue,
            ignore_eos=req.ignore_eos,
        )
        try:
            self._sched.submit(seq)
        except LlmkitError:
            seq.sampler.close()
            raise
        try:
            async for chunk in relay(queue):
                yield chunk
        finally:
            self._sched.cancel(seq)

    def _check_ids(self, ids: list[int], param: str) -> None:
        check_token_ids(ids, self.lm.n_vocab, param)


def human_count(n: int) -> str:
    """134515008 -> "134.52M", the way model sizes are written."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}".rstrip("0").rstrip(".") + unit
    return str(n)
