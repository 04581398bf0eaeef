"""The transformers engine: prompts through the tokenizer's own chat template,
and sequences taking turns on the model (``step``) on the shared decode loop.

torch is imported when the engine starts, never when this module is: the
llama.cpp quick start must not need it.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.core.types import EngineInfo, GenerateRequest, Image, Message, Tool
from llmkit.engines.decode_loop import Backend
from llmkit.engines.families import Family
from llmkit.engines.local import LocalEngine
from llmkit.engines.media import ImagePrompt
from llmkit.engines.transformers.model import LoadedHF  # torch only once it loads
from llmkit.errors import EngineError

if TYPE_CHECKING:  # the spec builds this engine: at run time, only it imports the other
    from llmkit.engines.transformers.spec import TransformersOptions


class TransformersEngine(LocalEngine[LoadedHF]):
    label = "transformers"

    def __init__(
        self, opts: TransformersOptions, *, source: Path, gguf_file: str | None, n_ctx: int
    ) -> None:
        """``n_ctx``: the context each sequence gets, as the fit check chose it."""
        super().__init__(max_queue=opts.max_queue)
        self.opts = opts
        self.source = source
        self.gguf_file = gguf_file
        self.context = n_ctx
        self._info: EngineInfo | None = None

    def _load(self) -> tuple[LoadedHF, Backend[Any]]:
        from llmkit.engines.transformers.step import TurnStep  # imports torch

        o = self.opts
        lm = LoadedHF(
            self.source,
            gguf_file=self.gguf_file,
            device=o.device,
            dtype=o.dtype,
            threads=o.threads,
            n_ctx=self.context,
            trust_remote_code=o.trust_remote_code,
            allow_pickle=o.allow_pickle,
        )
        return lm, TurnStep(lm, parallel=o.parallel)

    def find_family(self) -> Family:
        family = self.lm.family()
        self._info = self.lm.info(thinks=family.thinks)
        return family

    def _unload(self, lm: LoadedHF) -> None:
        torch = lm.torch
        lm.model = None  # the weights go now, before the next model loads
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def info(self) -> EngineInfo:
        if self._info is None:
            raise EngineError("The transformers engine is not started.")
        return self._info

    def tokenize_text(self, text: str, special: bool) -> list[int]:
        return self.lm.encode_text(text, special=False)

    def detokenize_ids(self, ids: list[int]) -> str:
        return self.lm.tokenizer.decode(ids)

    def chat_text(
        self, messages: tuple[Message, ...], tools: tuple[Tool, ...], variables: dict[str, Any]
    ) -> str:
        return self.lm.chat_text(messages, tools, variables)

    def chat_text_tokens(self, text: str) -> list[int]:
        # The template writes the special tokens (a BOS) itself.
        return self.lm.encode_text(text, special=False)

    @property
    def image_marker(self) -> str | None:
        return self.lm.image_marker

    def chat_image_tokens(self, text: str, images: list[Image]) -> list[int]:
        if self.lm.image_marker is None:
            raise self.no_vision()
        ids, inputs = self.lm.encode_with_images(text, images)
        # Nothing is shared between sequences here: the image inputs ride along
        # with the prompt, and its first forward pass reads them (``step``).
        return ImagePrompt(ids, {0: inputs})

    def prompt_text_tokens(self, text: str) -> list[int]:
        return self.lm.encode_text(text, special=True)

    def new_state(self, req: GenerateRequest, prompt: list[int], after_thinking: bool) -> Any:
        from llmkit.engines.transformers import sampler
        from llmkit.engines.transformers.step import new_state

        sampler.check(req, self.lm.n_vocab)
        state = new_state(self.lm, req.sampling, prompt)
        images = getattr(prompt, "images", None)
        if images:
            state.image_inputs = images[0]
        return state
