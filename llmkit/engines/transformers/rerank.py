"""A cross-encoder through transformers: a ``*ForSequenceClassification`` model
(bge-reranker, ms-marco-MiniLM, a fine-tune) served for reranking only.

A pair is what the tokenizer makes of ``(query, document)`` with its special
tokens (``<s> q </s></s> d </s>`` for XLM-RoBERTa, ``[CLS] q [SEP] d [SEP]`` for
BERT, with its segment ids), as sentence-transformers' ``CrossEncoder`` feeds it; the score is the
model's first logit, raw: what llama.cpp's rank pooling gives for the same
weights converted to GGUF, and what llama-server answers (vLLM and
``CrossEncoder.predict`` put a sigmoid on top for one-label models; apply it on
the client for a 0..1 score). Pairs are scored in padded batches of
``BATCH``, in order; none is cut: a pair longer than the model's positions is
refused, naming the document.

torch is imported when the engine starts, never when this module is.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, RerankRequest, RerankResult
from llmkit.engines.base import Engine
from llmkit.engines.rerank import cannot_generate, fit_pairs
from llmkit.errors import EngineError
from llmkit.models.sizing import human_count

if TYPE_CHECKING:
    from llmkit.engines.transformers.spec import TransformersOptions

#: Pairs run through the model together at most (padded to the longest of them).
BATCH = 32
#: A pair's token ids and, where the tokenizer gives them, its segment ids.
Pair = tuple[list[int], list[int] | None]
#: Model types whose positions start after the padding index (fairseq's offset).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


def is_cross_encoder(source: Path) -> bool:
    """Does the model directory hold a sequence classifier (config.json says so)?"""
    try:
        config = json.loads((source / "config.json").read_text())
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") or []
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


class LoadedCrossEncoder:
    """A tokenizer and a sequence classifier in eval mode."""

    def __init__(self, source: Path, opts: TransformersOptions) -> None:
        import torch
        import transformers

        from llmkit.engines.transformers.model import _device, _dtype

        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.torch = torch
        self.device = torch.device(_device(torch, opts.device))
        kwargs: dict[str, Any] = {"trust_remote_code": opts.trust_remote_code}
        weights_kw = {} if opts.allow_pickle else {"use_safetensors": True}
        try:
            self.config = transformers.AutoConfig.from_pretrained(source, **kwargs)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            self.dtype = _dtype(torch, opts.dtype, self.device, self.config)
            major = int(transformers.__version__.split(".")[0])
            dtype_kw = "dtype" if major >= 5 else "torch_dtype"
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                source, **kwargs, **weights_kw, **{dtype_kw: self.dtype}
            )
        except (OSError, ValueError) as e:
            raise EngineError(f"transformers could not load {source}: {e}") from e
        self.model = model.to(self.device).eval()
        self.source = source
        self.limit = self._positions()
        self._encoding = threading.Lock()  # a fast tokenizer refuses a second caller

    def _positions(self) -> int:
        """Tokens one pair may have: the model's positions (less fairseq's offset),
        and the tokenizer's own maximum where it sets a real one."""
        c = self.config
        n = int(getattr(c, "max_position_embeddings", 0) or 512)
        if getattr(c, "model_type", "") in OFFSET_POSITIONS:
            n -= int(getattr(c, "pad_token_id", 1) or 0) + 1
        most = getattr(self.tokenizer, "model_max_length", None)
        return min(n, most) if isinstance(most, int) and most < 1_000_000 else n

    def pair(self, query: str, document: str) -> Pair:
        """The pair's token ids, and its segment ids where the tokenizer gives them
        (BERT's: 0 for the query, 1 for the document; a BERT cross-encoder needs them)."""
        with self._encoding:
            enc = self.tokenizer(query, document)
        types = enc.get("token_type_ids")
        return list(enc["input_ids"]), list(types) if types is not None else None

    def scores(self, pairs: list[Pair]) -> list[float]:
        torch, out = self.torch, []
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(pairs), BATCH):
            group = pairs[start : start + BATCH]
            width = max(len(ids) for ids, _ in group)
            ids = torch.full((len(group), width), pad, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            types = torch.zeros((len(group), width), dtype=torch.long)
            for row, (p, segments) in enumerate(group):  # right padding, as the tokenizer pads
                ids[row, : len(p)] = torch.tensor(p)
                mask[row, : len(p)] = 1
                if segments is not None:
                    types[row, : len(p)] = torch.tensor(segments)
            inputs = {"input_ids": ids, "attention_mask": mask}
            if group[0][1] is not None:
                inputs["token_type_ids"] = types
            with torch.inference_mode():
                logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
            out.extend(float(x) for x in logits[:, 0].float().cpu())
        return out

    def info(self) -> EngineInfo:
        n_params = sum(p.numel() for p in self.model.parameters())
        size = sum(p.numel() * p.element_size() for p in self.model.parameters())
        arch = str(getattr(self.config, "model_type", "") or "")
        dtype = str(self.dtype).removeprefix("torch.")
        return EngineInfo(
            engine="transformers",
            model=str(self.source),
            context_length=self.limit,
            details={"device": str(self.device), "dtype": dtype, "batch": BATCH},
            format="safetensors",
            family=arch,
            parameter_count=n_params,
            parameter_size=human_count(n_params),
            quantization=dtype,
            size_bytes=size,
            metadata={"general.architecture": arch},
            capabilities=("rerank",),
        )


class CrossEncoderEngine(Engine):
    """Reranks; generation and embeddings are refused with a 400."""

    def __init__(self, opts: TransformersOptions, *, source: Path) -> None:
        self.opts = opts
        self.source = source
        self._m: LoadedCrossEncoder | None = None
        self._info: EngineInfo | None = None
        self._busy = asyncio.Lock()  # one batch job at a time, and none while unloading

    async def start(self) -> None:
        self._m = await asyncio.to_thread(LoadedCrossEncoder, self.source, self.opts)
        self._info = self._m.info()

    async def close(self) -> None:
        async with self._busy:
            if self._m is not None:
                torch, self._m = self._m.torch, None
                gc.collect()  # the weights go now, before the next model loads
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    @property
    def m(self) -> LoadedCrossEncoder:
        if self._m is None:
            raise EngineError("The transformers engine is not started.")
        return self._m

    @property
    def info(self) -> EngineInfo:
        if self._info is None:
            raise EngineError("The transformers engine is not started.")
        return self._info

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        raise cannot_generate(self.source.name)
        yield  # pragma: no cover - makes this an async generator

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        m = self.m
        return list(m.tokenizer(text, add_special_tokens=special)["input_ids"])

    async def detokenize(self, ids: list[int]) -> str:
        return str(self.m.tokenizer.decode(ids))

    async def rerank(self, req: RerankRequest) -> RerankResult:
        m = self.m
        pairs = await asyncio.to_thread(lambda: [m.pair(req.query, d) for d in req.documents])
        fit_pairs([ids for ids, _ in pairs], m.limit)
        async with self._busy:
            scores = await asyncio.to_thread(self.m.scores, pairs)
        return RerankResult(tuple(scores), prompt_tokens=sum(len(ids) for ids, _ in pairs))
