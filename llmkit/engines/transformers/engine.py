"""The transformers engine's asyncio face: prompts through the tokenizer's own chat
template, the context budget checked before the first chunk, and the decode
thread's chunks relayed to the awaiting coroutine (``scheduler``).

torch is imported when the engine starts, never when this module is: the
llama.cpp quick start must not need it.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path

from llmkit.core.types import Chunk, EngineInfo, GenerateRequest
from llmkit.engines.base import Engine, check_token_ids, relay, reply_budget
from llmkit.engines.textstream import TextStream
from llmkit.engines.transformers.spec import TransformersOptions
from llmkit.errors import EngineError, InvalidRequestError, LlmkitError


class TransformersEngine(Engine):
    def __init__(self, opts: TransformersOptions, *, source: Path, gguf_file: str | None) -> None:
        self.opts = opts
        self.source = source
        self.gguf_file = gguf_file
        self._lm = None  # LoadedHF, once started
        self._sched = None  # Scheduler
        self._info: EngineInfo | None = None

    async def start(self) -> None:
        from llmkit.engines.transformers.model import LoadedHF
        from llmkit.engines.transformers.scheduler import Scheduler

        o = self.opts
        self._lm = await asyncio.to_thread(
            LoadedHF,
            self.source,
            gguf_file=self.gguf_file,
            device=o.device,
            dtype=o.dtype,
            threads=o.threads,
            max_model_len=o.max_model_len,
        )
        self._info = self._lm.info()
        self._sched = Scheduler(self._lm, parallel=o.parallel, max_queue=o.max_queue)

    async def close(self) -> None:
        if self._sched is not None:
            await asyncio.to_thread(self._sched.close)
            self._sched = None
        if self._lm is not None:
            torch = self._lm.torch
            self._lm = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    @property
    def lm(self):  # type: ignore[no-untyped-def]
        if self._lm is None:
            raise EngineError("The transformers engine is not started.")
        return self._lm

    @property
    def info(self) -> EngineInfo:
        if self._info is None:
            raise EngineError("The transformers engine is not started.")
        return self._info

    def load(self) -> tuple[int, int]:
        return self._sched.load if self._sched else (0, 0)

    def finish_all(self) -> int:
        return self._sched.finish_all() if self._sched else 0

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.lm.encode_text(text, special=False)

    async def detokenize(self, ids: list[int]) -> str:
        self._check_ids(ids, "tokens")
        return self.lm.tokenizer.decode(ids)

    async def encode(self, req: GenerateRequest) -> list[int]:
        return self.prompt_tokens(req)

    def prompt_tokens(self, req: GenerateRequest) -> list[int]:
        if req.messages is not None:
            return self.lm.chat_prompt(req.messages)
        if isinstance(req.prompt, tuple):
            self._check_ids(list(req.prompt), "prompt")
            return list(req.prompt)
        return self.lm.encode_text(req.prompt or "", special=True)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        from llmkit.engines.transformers import sampler
        from llmkit.engines.transformers.scheduler import Sequence

        if self._sched is None:
            raise EngineError("The transformers engine is not started.")
        sampler.check(req.sampling, self.lm.n_vocab)
        prompt = self.prompt_tokens(req)
        if not prompt:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        max_tokens = reply_budget(len(prompt), req.max_tokens, self.lm.n_ctx, req.context_limit)
        queue: asyncio.Queue[Chunk | LlmkitError | None] = asyncio.Queue()
        seq = Sequence(
            prompt=prompt,
            sampling=req.sampling,
            max_tokens=max_tokens,
            text=TextStream(req.stop),
            loop=asyncio.get_running_loop(),
            queue=queue,
            ignore_eos=req.ignore_eos,
        )
        self._sched.submit(seq)
        try:
            async for chunk in relay(queue):
                yield chunk
        finally:
            self._sched.cancel(seq)

    def _check_ids(self, ids: list[int], param: str) -> None:
        check_token_ids(ids, self.lm.n_vocab, param)
