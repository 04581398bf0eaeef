"""The transformers engine's declaration: a Hugging Face model (or a GGUF that
transformers dequantizes) on the CPU or a GPU, the "from source" path.

torch and transformers are imported only when a model is built and started.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from llmkit.engines.base import LocalEngineOptions, normalise_dtype
from llmkit.engines.spec import BuildContext, Built, EngineSpec
from llmkit.env import ModelsSettings
from llmkit.errors import ModelSpecError
from llmkit.models.fit import fit_before_transformers
from llmkit.models.metadata import describe_files, file_mtime
from llmkit.models.resolve import ResolvedModel, locate, resolve_model


class TransformersOptions(LocalEngineOptions):
    device: str = Field(
        default="auto", description="auto, cpu, cuda or cuda:N (auto: a GPU if there is one)."
    )
    dtype: str = Field(
        default="auto", description="auto, float32, float16 or bfloat16 (weights and compute)."
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Run the Python code a model repository ships (its own architecture). "
        "Off: only architectures transformers knows load.",
    )
    allow_pickle: bool = Field(
        default=False,
        description="Load weights from pickle files (.bin, .pt), which can run code; off: "
        "safetensors (or GGUF) only.",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        return normalise_dtype(v)


def hf_source(found: ResolvedModel, models: ModelsSettings) -> tuple[Path, str | None]:
    """(directory, GGUF file name or None) for transformers' ``from_pretrained``."""
    path = found.path
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelSpecError(f"{path} is neither a model directory nor a .gguf file.")
        return path.parent, path.name
    if (path / "config.json").is_file():
        return path, None
    gguf = resolve_model(str(path), models).path  # one GGUF in the directory
    return gguf.parent, gguf.name


def _source(ctx: BuildContext) -> tuple[ResolvedModel, Path, str | None]:
    from llmkit.engines.transformers.model import require_transformers

    found = locate(ctx.model, ctx.models)
    source, gguf = hf_source(found, ctx.models)
    require_transformers(gguf is not None)
    return found, source, gguf


def _fit(ctx: BuildContext, o: TransformersOptions) -> Any:
    found, source, gguf = _source(ctx)
    return fit_before_transformers(
        source / gguf if gguf else source,
        found.name,
        device=o.device,
        dtype=o.dtype,
        max_model_len=o.max_model_len,
        parallel=o.parallel,
        memory_gib=ctx.models.memory_gib,
    )


def _build(ctx: BuildContext, o: TransformersOptions, estimate: Any) -> list[Built]:
    from llmkit.engines.transformers.engine import TransformersEngine
    from llmkit.engines.transformers.rerank import CrossEncoderEngine, is_cross_encoder

    found, source, gguf = _source(ctx)
    path = source / gguf if gguf else source
    if gguf is None and is_cross_encoder(source):  # a reranker: scores pairs, no generation
        describe = replace(describe_files("transformers", path, None), capabilities=("rerank",))
        cross = CrossEncoderEngine(o, source=source)
        return [Built(found.name, cross, describe, created=file_mtime(path))]
    # The context the fit check chose is the one the engine loads with.
    engine = TransformersEngine(o, source=source, gguf_file=gguf, n_ctx=estimate.context)
    describe = describe_files("transformers", path, estimate.context)
    if _has_vision(path):  # its processor reads images (``model.LoadedHF``)
        describe = replace(describe, capabilities=(*describe.capabilities, "vision"))
    return [Built(found.name, engine, describe, created=file_mtime(path))]


SPEC = EngineSpec(
    name="transformers",
    summary="a Hugging Face model through transformers, on the CPU or a GPU",
    options=TransformersOptions,
    fit=_fit,
    build=_build,
    aliases=("hf",),
)


def _has_vision(path: Path) -> bool:
    """A model directory whose config.json has a vision tower (``vision_config``)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("vision_config"), dict)
