"""From a model entry (``serve_config.ModelEntry``) to served models: which engine,
with which options, under which names, loaded when, kept how long.

Each engine takes its options as a pydantic class with ``extra="forbid"``, built
here before anything loads: a setting that does not apply to the chosen engine,
a missing extra (torch, vLLM) or an upstream URL without a dialect is refused
with what to do, not discovered half-way through serving.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from llmkit.core.types import EngineInfo
from llmkit.engines.base import LocalEngineOptions
from llmkit.engines.registry import ServedModel
from llmkit.errors import ConfigError, LlmkitError, ModelSpecError, UnreachableError
from llmkit.models.metadata import read_facts
from llmkit.models.resolve import ResolvedModel, locate, resolve_model
from llmkit.serve_config import ModelEntry, parse_keep_alive
from llmkit.settings import ModelsSettings

Opts = TypeVar("Opts", bound=BaseModel)
Progress = Callable[[float], None] | None


class LlamaCppOptions(LocalEngineOptions):
    pass


def options(cls: type[Opts], entry: ModelEntry) -> Opts:
    """The engine's options from the entry, or a ConfigError naming what is wrong."""
    try:
        return cls.model_validate(entry.engine_options(set(cls.model_fields)))
    except ValidationError as e:
        flag = (lambda k: k) if entry.where else (lambda k: "--" + k.replace("_", "-"))
        takes = ", ".join(flag(k) for k in cls.model_fields)
        problems = []
        for err in e.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            if err["type"] == "extra_forbidden":
                problems.append(f"{flag(key)} does not apply to the {entry.engine} engine")
            elif err["type"] == "missing":
                problems.append(f"the {entry.engine} engine needs {flag(key)}")
            else:
                problems.append(f"{flag(key)}: {err['msg']}")
        raise ConfigError(
            f"{entry.where}{'; '.join(problems)} (it takes: {takes or 'no options'})."
        ) from None


def build_models(
    entry: ModelEntry, *, models: ModelsSettings, on_progress: Progress = None
) -> list[ServedModel]:
    builders = {
        "llamacpp": _llamacpp,
        "transformers": _transformers,
        "vllm": _vllm,
        "upstream": _upstream,
    }
    return builders[entry.engine](entry, models, on_progress)


def _served(entry: ModelEntry, engine, default_name: str, **kw) -> ServedModel:  # type: ignore[no-untyped-def]
    return ServedModel(
        names=entry.served_model_name or [default_name],
        engine=engine,
        keep_alive=parse_keep_alive(entry.keep_alive),
        preload=entry.load == "startup",
        **kw,
    )


def _mtime(path: Path) -> int:
    return int(os.path.getmtime(path)) if path.exists() else 0


def _describe(engine: str, path: Path, context: int | None) -> EngineInfo:
    """What listings show before the model first loads: its files' facts."""
    from llmkit.engines.llamacpp.engine import human_count

    try:
        f = read_facts(path)
    except (ModelSpecError, OSError, ValueError):
        return EngineInfo(engine=engine, model=str(path), context_length=context or 0)
    n = f.n_params or 0
    return EngineInfo(
        engine=engine,
        model=str(path),
        context_length=context or f.context_length or 0,
        format=f.format,
        family=f.architecture or "",
        parameter_count=n,
        parameter_size=human_count(n) if n else "",
        quantization=f.weight_format if f.weight_format != "unknown" else "",
        size_bytes=f.weights_bytes or 0,
        license=f.license or "",
    )


def _llamacpp(
    entry: ModelEntry, models: ModelsSettings, on_progress: Progress
) -> list[ServedModel]:
    from llmkit.engines.llamacpp.engine import LlamaCppEngine
    from llmkit.engines.llamacpp.model import LoadOptions
    from llmkit.models.fit import fit_before_serving

    o = options(LlamaCppOptions, entry)
    model = resolve_model(entry.model, models)
    # Refuse with the numbers now rather than die out of memory half-way through loading.
    estimate = fit_before_serving(
        model.path,
        model.name,
        max_model_len=o.max_model_len,
        parallel=o.parallel,
        memory_gib=models.memory_gib,
    )
    engine = LlamaCppEngine(
        LoadOptions(
            path=str(model.path),
            n_ctx=o.max_model_len,
            n_threads=o.threads,
            parallel=o.parallel,
            on_progress=on_progress,
        ),
        max_queue=o.max_queue,
    )
    describe = _describe("llama.cpp", model.path, estimate.context)
    return [_served(entry, engine, model.name, created=_mtime(model.path), describe=describe)]


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


def _transformers(
    entry: ModelEntry, models: ModelsSettings, on_progress: Progress
) -> list[ServedModel]:
    from llmkit.engines.transformers.engine import TransformersEngine, TransformersOptions
    from llmkit.engines.transformers.model import require_transformers
    from llmkit.models.fit import fit_before_transformers

    o = options(TransformersOptions, entry)
    found = locate(entry.model, models)
    source, gguf = hf_source(found, models)
    require_transformers(gguf is not None)
    path = source / gguf if gguf else source
    fit_before_transformers(
        path,
        found.name,
        device=o.device,
        dtype=o.dtype,
        max_model_len=o.max_model_len,
        parallel=o.parallel,
        memory_gib=models.memory_gib,
    )
    engine = TransformersEngine(o, source=source, gguf_file=gguf)
    describe = _describe("transformers", path, o.max_model_len)
    return [_served(entry, engine, found.name, created=_mtime(path), describe=describe)]


def _vllm(entry: ModelEntry, models: ModelsSettings, on_progress: Progress) -> list[ServedModel]:
    from llmkit.engines.vllm import VllmEngine, VllmOptions, vllm_command

    o = options(VllmOptions, entry)
    if entry.model is None:
        raise ConfigError(
            f"{entry.where}the vllm engine needs a model: a Hugging Face repo id (vLLM "
            "downloads it) or a local model directory."
        )
    command = vllm_command(o)
    try:  # a model llmkit has: its files; anything else is vLLM's to fetch
        found = locate(entry.model, models)
        model, name = str(found.path), found.name
    except ModelSpecError:
        model = name = entry.model
    names = entry.served_model_name or [name]
    engine = VllmEngine(o, command=command, model=model, served_name=names[0], env=os.environ)
    describe = EngineInfo(engine="vllm", model=model, context_length=o.max_model_len or 0)
    return [_served(entry, engine, name, describe=describe)]


def _upstream(
    entry: ModelEntry, models: ModelsSettings, on_progress: Progress
) -> list[ServedModel]:
    from llmkit.client.protocol import parse_url
    from llmkit.engines.upstream import UpstreamEngine, UpstreamOptions

    o = options(UpstreamOptions, entry)
    url, dialect = parse_url(o.upstream, option="--upstream")
    names = [entry.model] if entry.model else _upstream_models(url, dialect, o.upstream_api_key)
    if len(names) > 1 and entry.served_model_name:
        raise ConfigError(
            f"{entry.where}served_model_name names one model, and {url} serves "
            f"{len(names)}: give model too."
        )
    served = []
    for name in names:
        engine = UpstreamEngine(o.upstream, model=name, api_key=o.upstream_api_key)
        describe = EngineInfo(engine="upstream", model=name, context_length=0)
        served.append(_served(entry, engine, name, describe=describe))
    return served


def _upstream_models(url: str, dialect: str | None, api_key: str | None) -> list[str]:
    """Every model the upstream lists now (serving them all needs it up at start)."""
    from llmkit.client.http import Client

    try:
        with Client(url, api_key=api_key, dialect=dialect, timeout=5.0) as client:  # type: ignore[arg-type]
            names = client.models()
    except UnreachableError as e:
        raise ConfigError(
            f"Cannot list the models of {url} ({type(e.__cause__).__name__}): is it running? "
            "Or name the model with --model."
        ) from None
    except LlmkitError:
        names = []
    if not names:
        raise ConfigError(f"{url} lists no models; name the model with --model.")
    return names
