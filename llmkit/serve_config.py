"""What ``llmkit serve`` serves: the per-model settings every engine reads from, the
multi-model config file (read here and nowhere else), and the list of model entries
built from the flags or from that file.

    # models.yaml: any serve setting at the top (flags and LLMKIT_* still win),
    # then one entry per served model; an entry's own keys win over the top's.
    keep_alive: 10m
    models:
      - model: SmolLM2-135M-Instruct
        served_model_name: [smol]
      - model: ./qwen2-0_5b-instruct
        engine: transformers
        load: first-use

Which of these settings an engine takes is the engine's business: each one
validates its own options (``engines/factory.py``), so a setting that does not
apply to the chosen engine is refused before anything loads.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import NoDecode

from llmkit.errors import ConfigError

if TYPE_CHECKING:
    from llmkit.settings import ServeSettings

EngineName = Literal["llamacpp", "transformers", "vllm", "upstream"]
ENGINE_ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "hf": "transformers"}


class ModelFields(BaseModel):
    """The settings of one served model; ``ServeSettings`` has them too, as flags."""

    engine: EngineName = Field(
        default="llamacpp",
        description="llamacpp (GGUF, CPU), transformers (a Hugging Face model, CPU or GPU), "
        "vllm (a supervised vLLM server, GPU) or upstream (a running OpenAI/Ollama server).",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Context length per sequence (default: the model's own, capped for memory).",
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for llama.cpp or torch (default: all usable)."
    )
    parallel: int = Field(
        default=4, ge=1, le=64, description="Sequences decoded together in one batch."
    )
    max_queue: int = Field(
        default=64, ge=0, description="Requests that may wait for a free sequence before 503."
    )
    device: str = Field(
        default="auto", description="transformers: auto, cpu, cuda or cuda:N (auto: a GPU if any)."
    )
    dtype: str = Field(
        default="auto",
        description="transformers, vllm: auto, float32, float16 or bfloat16 (weights and compute).",
    )
    upstream: str | None = Field(
        default=None,
        description="upstream: the server to forward to, http://HOST:PORT (dialect detected), "
        "ollama://HOST:PORT or openai://HOST:PORT/v1.",
    )
    upstream_api_key: str | None = Field(
        default=None, description="upstream: the API key the upstream server wants."
    )
    tensor_parallel_size: int | None = Field(
        default=None, ge=1, description="vllm: GPUs each layer is split over (default 1)."
    )
    pipeline_parallel_size: int | None = Field(
        default=None, ge=1, description="vllm: pipeline stages, e.g. one per node (default 1)."
    )
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="vllm: fraction of each GPU's memory (default 0.9)."
    )
    enforce_eager: bool = Field(default=False, description="vllm: no CUDA graphs (less memory).")
    distributed_executor_backend: Literal["ray", "mp"] | None = Field(
        default=None, description="vllm: ray for several nodes (start Ray first), mp for one."
    )
    cuda_visible_devices: str | None = Field(
        default=None, description="vllm, transformers: the GPUs to use, e.g. 0,1 (sets the env)."
    )
    vllm_arg: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="vllm: more arguments for vLLM, as they are: --vllm-arg --max-num-seqs 64",
    )
    vllm_command: str | None = Field(
        default=None,
        description="vllm: the command that starts vLLM's OpenAI server (default: this Python "
        "with -m vllm.entrypoints.openai.api_server).",
    )
    load: Literal["startup", "first-use"] = Field(
        default="startup", description="Load each model at start-up or on its first request."
    )
    keep_alive: str = Field(
        default="-1",
        description="How long an idle model stays loaded, as Ollama's keep_alive: 5m, 1h, 300 "
        "(seconds), 0 (unload after each request), -1 (forever).",
    )

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_alias(cls, v: object) -> object:
        return ENGINE_ALIASES.get(v, v) if isinstance(v, str) else v

    @field_validator("vllm_arg", mode="before")
    @classmethod
    def _split_args(cls, v: object) -> object:
        # One string holds several arguments ("--max-num-seqs 64"), as a shell would split it.
        if isinstance(v, str):
            return shlex.split(v)
        if isinstance(v, list | tuple):
            return [a for x in v for a in (shlex.split(x) if isinstance(x, str) else [str(x)])]
        return v

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, v: object) -> object:
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str):
            parse_keep_alive(v)  # refuse now what could not be read later
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        v = {"half": "float16", "float": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(v, v)
        if v not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError("must be auto, float32, float16 or bfloat16")
        return v


#: The settings that belong to an engine (the others say what and when to serve).
ENGINE_FIELDS = frozenset(ModelFields.model_fields) - {"engine", "load", "keep_alive"}


class ModelEntry(ModelFields):
    """One served model. ``defaults`` are the server-wide settings: an engine takes
    those that apply to it, while the entry's own settings must all apply."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    served_model_name: list[str] = Field(default_factory=list)
    _defaults: dict[str, Any] = PrivateAttr(default_factory=dict)
    _where: str = PrivateAttr(default="")

    @field_validator("served_model_name", mode="before")
    @classmethod
    def _names(cls, v: object) -> object:
        return split_list(v)

    def model_post_init(self, context: Any) -> None:
        # `--upstream URL` alone means the upstream engine.
        if "upstream" in self.model_fields_set and "engine" not in self.model_fields_set:
            self.engine = "upstream"

    @property
    def where(self) -> str:
        """How to name this entry in an error: 'models.yaml, model 2: ' or ''."""
        return self._where

    def engine_options(self, accepted: set[str]) -> dict[str, Any]:
        """The engine's options: server-wide ones it accepts, then the entry's own
        (all of them, so the engine's validation refuses any that do not apply)."""
        own = {k: getattr(self, k) for k in self.model_fields_set & ENGINE_FIELDS}
        return {k: v for k, v in self._defaults.items() if k in accepted} | own


def split_list(v: object) -> object:
    """'a,b' or '["a","b"]' (env, YAML) -> a list; None -> []; lists pass through."""
    if v is None:
        return []
    if isinstance(v, str):
        if v.lstrip().startswith("["):
            return json.loads(v)
        return [x.strip() for x in v.split(",") if x.strip()]
    return v


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: str | float | int | None) -> float | None:
    """Ollama's ``keep_alive`` in seconds; None means forever (any negative value).

    A number is seconds; a string is a number or a Go duration ("5m", "1h30m",
    "-1m"), as Ollama reads it.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
            body = text.lstrip("+-")
            if not parts or "".join(n + u for n, u in parts) != body:
                raise ValueError(
                    f"keep_alive '{value}' is not a duration: use 5m, 1h, 300 (seconds), 0 or -1"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
            if text.startswith("-"):
                seconds = -seconds
    return None if seconds < 0 else seconds


# -- the config file -------------------------------------------------------------


def read_config_file(path: Path, server_fields: set[str]) -> dict[str, Any]:
    """The file's top-level settings, with ``models`` as a list of ``ModelEntry``.

    Unknown keys are refused with the ones that exist: a typo must not be ignored.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"Cannot read the config file {path}: {e.strerror or e}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, with 'models:' a list.")
    unknown = sorted(set(data) - server_fields - {"models"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; the file takes "
            f"{', '.join(sorted(server_fields | {'models'}))}."
        )
    models = data.pop("models", None) or []
    if not isinstance(models, list):
        raise ConfigError(f"{path}: 'models' must be a list of models, one mapping each.")
    entries = []
    for i, item in enumerate(models, start=1):
        where = f"{path}, model {i}: "
        if not isinstance(item, dict):
            raise ConfigError(f"{where}each model must be a mapping (model: ..., engine: ...).")
        try:
            entry = ModelEntry.model_validate(item)
        except ValidationError as e:
            raise ConfigError(where + validation_message(e, flags=False)) from None
        entry._where = where
        entries.append(entry)
    data["file_models"] = entries
    return data


def validation_message(e: ValidationError, *, flags: bool = True) -> str:
    """A pydantic error as one line naming each setting (as a flag, or as a key)."""

    def one(err: Any) -> str:
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        if not err["loc"]:  # a check across several settings
            return msg
        name = "-".join(str(x) for x in err["loc"])
        return f"--{name.replace('_', '-')}: {msg}" if flags else f"{name}: {msg}"

    return "; ".join(one(err) for err in e.errors())


def model_entries(settings: ServeSettings) -> list[ModelEntry]:
    """The models to serve: the config file's list, or one per ``--model`` (the
    bundled model when none is named)."""
    given = settings.model_fields_set
    if settings.file_models:
        if settings.model or settings.served_model_name:
            raise ConfigError(
                f"Models come from {settings.config} or from --model, not both: "
                "add this one (or its served_model_name) to the file's 'models' list."
            )
        defaults = {k: getattr(settings, k) for k in given & ENGINE_FIELDS}
        entries = []
        for entry in settings.file_models:
            for k in ("engine", "load", "keep_alive"):
                if k not in entry.model_fields_set:
                    setattr(entry, k, getattr(settings, k))
            entry._defaults = defaults
            entries.append(entry)
        return entries
    specs: list[str | None] = list(settings.model) or [None]
    if len(specs) > 1 and settings.served_model_name:
        raise ConfigError(
            "--served-model-name names one model; to name each of several models, "
            "list them in a config file (--config models.yaml)."
        )
    # One model from flags: every setting given is the model's own, and must apply.
    own = {k: getattr(settings, k) for k in given & set(ModelFields.model_fields)}
    return [
        ModelEntry.model_validate(
            {**own, "model": spec, "served_model_name": list(settings.served_model_name)}
        )
        for spec in specs
    ]
