"""The vLLM engine's declaration: vLLM's own OpenAI server, started and supervised
as a child process (GPUs, several of them, several nodes through Ray).

vLLM itself is looked for only when a model is built: nothing here needs it.
"""

from __future__ import annotations

import shlex
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmkit.core.types import EngineInfo
from llmkit.engines.base import normalise_dtype
from llmkit.engines.remote import UpstreamTimeout
from llmkit.engines.spec import BuildContext, Built, EngineSpec
from llmkit.errors import ConfigError, ModelSpecError
from llmkit.models.resolve import locate


class VllmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_model_len: int | None = Field(
        default=None, ge=16, description="Context length per sequence (default: vLLM's choice)."
    )
    dtype: str = Field(
        default="auto", description="auto, float32, float16 or bfloat16 (weights and compute)."
    )
    tensor_parallel_size: int | None = Field(
        default=None, ge=1, description="GPUs each layer is split over (default 1)."
    )
    pipeline_parallel_size: int | None = Field(
        default=None, ge=1, description="Pipeline stages, e.g. one per node (default 1)."
    )
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of each GPU's memory (default 0.9)."
    )
    enforce_eager: bool = Field(default=False, description="No CUDA graphs (less memory).")
    distributed_executor_backend: Literal["ray", "mp"] | None = Field(
        default=None, description="ray for several nodes (start Ray first), mp for one."
    )
    cuda_visible_devices: str | None = Field(
        default=None, description="The GPUs to use, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES)."
    )
    vllm_arg: list[str] = Field(
        default_factory=list,
        description="More arguments for vLLM, as they are: --vllm-arg --max-num-seqs 64",
    )
    vllm_command: str | None = Field(
        default=None,
        description="The command that starts vLLM's OpenAI server (default: this Python "
        "with -m vllm.entrypoints.openai.api_server).",
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        description="Restarts of a vLLM that died or hung allowed within --restart-window; "
        "past that the engine stays failed (503) until llmkit restarts.",
    )
    restart_window: float = Field(
        default=600.0, gt=0, description="Seconds over which --max-restarts is counted."
    )
    health_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between probes of vLLM's /health; a probe unanswered within "
        "this (at most 5 s) is missed, and three missed in a row (a vLLM alive but stuck) "
        "and it is killed and restarted.",
    )
    upstream_timeout: UpstreamTimeout = 120.0
    # Supervision, not a setting users give: how long loading may take.
    startup_timeout: float = Field(default=1800.0, json_schema_extra={"flag": False})

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        return normalise_dtype(v)

    @field_validator("vllm_arg", mode="before")
    @classmethod
    def _split_args(cls, v: object) -> object:
        # One string holds several arguments ("--max-num-seqs 64"), as a shell would split it.
        if isinstance(v, str):
            return shlex.split(v)
        if isinstance(v, list | tuple):
            return [a for x in v for a in (shlex.split(x) if isinstance(x, str) else [str(x)])]
        return v


def _build(ctx: BuildContext, o: VllmOptions, _fit: Any) -> list[Built]:
    from llmkit.engines.vllm.engine import VllmEngine, vllm_command

    if ctx.model is None:
        raise ConfigError(
            f"{ctx.where}the vllm engine needs a model: a Hugging Face repo id (vLLM "
            "downloads it) or a local model directory."
        )
    command = vllm_command(o)
    try:  # a model llmkit has: its files; anything else is vLLM's to fetch
        found = locate(ctx.model, ctx.models)
        model, name = str(found.path), found.name
    except ModelSpecError:
        model = name = ctx.model
    served = ctx.served_names[0] if ctx.served_names else name
    engine = VllmEngine(o, command=command, model=model, served_name=served, env=ctx.environ)
    describe = EngineInfo(engine="vllm", model=model, context_length=o.max_model_len or 0)
    return [Built(name, engine, describe)]


SPEC = EngineSpec(
    name="vllm",
    summary="vLLM's server as a supervised child, for GPUs",
    options=VllmOptions,
    build=_build,
)
