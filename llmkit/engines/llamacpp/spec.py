"""The llama.cpp engine's declaration: GGUF models on the CPU, the default engine.

Nothing heavy is imported here: ``llama_cpp`` loads when a model is built.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from llmkit.engines.base import LocalEngineOptions
from llmkit.engines.llamacpp.doctor import build_checks
from llmkit.engines.spec import BuildContext, Built, EngineSpec
from llmkit.errors import ModelSpecError
from llmkit.models.fit import MemoryEstimate, available_ram, fit_before_serving
from llmkit.models.fit_companions import fit_adapters, fit_draft, fit_projector
from llmkit.models.gguf_header import is_gguf, read_gguf_header
from llmkit.models.lora import AdapterSpec, adapter_gguf, check_adapter, parse_lora
from llmkit.models.metadata import describe_files, file_mtime
from llmkit.models.modelfile import Modelfile
from llmkit.models.resolve import ResolvedModel, model_projector, resolve_model


class LlamaCppOptions(LocalEngineOptions):
    """What every in-process engine takes, the size of the shared KV pool and of
    its host-memory second tier."""

    kv_cache_size: int | None = Field(
        default=None,
        ge=16,
        description=(
            "Tokens of KV cache all sequences share, taken as they grow "
            "(default: max-model-len x parallel)."
        ),
    )
    kv_host_cache: int = Field(
        default=8192,
        ge=0,
        description=(
            "MiB of host memory that keep sequences evicted from the KV pool, restored "
            "when a prompt starts with one again (default: 8192, at most a quarter of "
            "the RAM available; 0: off)."
        ),
    )
    speculative: Literal["ngram", "draft", "off"] | None = Field(
        default=None,
        description=(
            "Speculative decoding: ngram (drafts from each request's own prompt and "
            "reply, no second model), draft (from --draft-model) or off; the reply is "
            "the same, only faster (default: draft with --draft-model, else ngram)."
        ),
    )

    @field_validator("speculative", mode="before")
    @classmethod
    def _yaml_off(cls, v: object) -> object:
        # A config file's ``speculative: off`` reads as false in YAML.
        return "off" if v is False else v

    draft_model: str | None = Field(
        default=None,
        description=(
            "A small GGUF of the served model's tokenizer (a model name or a path) that "
            "drafts tokens for speculative decoding; its memory counts in the fit check."
        ),
    )
    mmproj: str | None = Field(
        default=None,
        description=(
            "A vision model's projector (an mmproj GGUF, as llama.cpp's converter makes "
            "with --mmproj): the model then takes images. Default: the one a pulled "
            "repository or an Ollama model carries."
        ),
    )
    lora: list[str] = Field(
        default_factory=list,
        description=(
            "A LoRA adapter, PATH[:SCALE] (a GGUF adapter, or a PEFT directory that "
            "llama.cpp's converter turns into one), served as its own model named after "
            "its file, on the base model's weights; repeat for more."
        ),
    )
    lora_modules: list[str] = Field(
        default_factory=list,
        description=(
            "A LoRA adapter served as the model NAME (as vLLM's --lora-modules), "
            "NAME=PATH[:SCALE], on the base model's weights; repeat for more."
        ),
    )


@dataclass(frozen=True)
class Adapter:
    """One LoRA adapter, ready to load: as given, its GGUF, its size."""

    spec: AdapterSpec
    gguf: Path
    size: int


@dataclass(frozen=True)
class Fitted:
    """What ``_fit`` hands ``_build``: the base's estimate; the adapters each served as
    a model of its own; those the base model itself carries (a Modelfile's)."""

    estimate: MemoryEstimate
    served: tuple[Adapter, ...] = ()
    own: tuple[Adapter, ...] = ()
    projector: Path | None = None  # a vision model's, counted in the estimate
    draft: Path | None = None  # the draft model's GGUF (``--draft-model``)


def _fit(ctx: BuildContext, o: LlamaCppOptions) -> Fitted:
    # Refuse with the numbers now rather than die out of memory half-way through loading.
    model = resolve_model(ctx.model, ctx.models)
    ranks = _reranker_context(model)
    estimate = fit_before_serving(
        model.path,
        model.name,
        max_model_len=o.max_model_len or _modelfile_context(model) or ranks,
        # Not given: as many as memory allows (up to the default), chosen with the context.
        parallel=o.parallel if "parallel" in o.model_fields_set else (1 if ranks else None),
        memory_gib=ctx.models.memory_gib,
        kv_cache_size=o.kv_cache_size,
    )
    projector = _projector(o, model)
    if projector is not None:
        fit_projector(estimate, model.name, projector, memory_gib=ctx.models.memory_gib)
    draft = _draft(ctx, o)
    if draft is not None:
        from llmkit.engines.llamacpp.draft_model import SLOTS

        slots = min(SLOTS, estimate.sequences)
        fit_draft(estimate, model.name, draft, slots=slots, memory_gib=ctx.models.memory_gib)
    given = [parse_lora(v) for v in o.lora]
    given += [_named(v) for v in o.lora_modules]
    made = model.entry.modelfile if model.entry else None
    # A Modelfile's ADAPTER is a path, scale 1 (Ollama's): never read as PATH:SCALE.
    own = [AdapterSpec(Path(a)) for a in made.adapters] if made else []
    if not given and not own:
        return Fitted(estimate, projector=projector, draft=draft)
    cache = ctx.models.models_dir / "adapters"

    def ready(spec: AdapterSpec) -> Adapter:
        gguf = adapter_gguf(spec, cache)  # a PEFT directory is converted here, once
        return Adapter(spec, gguf, check_adapter(gguf, model.path, spec.label, model.name))

    served, mine = tuple(ready(a) for a in given), tuple(ready(a) for a in own)
    # Each served adapter is a context of its own: its KV pool and buffers, and the
    # adapter's tensors; the weights are counted once, with the base.
    fit_adapters(
        estimate,
        model.name,
        [(a.spec.label, a.size) for a in (*served, *mine)],
        contexts=len(served),
        memory_gib=ctx.models.memory_gib,
    )
    return Fitted(estimate, served, mine, projector, draft)


def _projector(o: LlamaCppOptions, model: ResolvedModel) -> Path | None:
    """``--mmproj`` as given, else the projector that came with the model."""
    if o.mmproj is None:
        return model_projector(model)
    path = Path(o.mmproj).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"--mmproj {o.mmproj}: no such file.")
    if not is_gguf(path):
        raise ModelSpecError(f"--mmproj {o.mmproj} is not a GGUF file (an mmproj GGUF is).")
    return path


def _mode(o: LlamaCppOptions) -> str:
    if o.speculative is not None:
        return o.speculative
    return "draft" if o.draft_model else "ngram"


def _draft(ctx: BuildContext, o: LlamaCppOptions) -> Path | None:
    """The draft model's GGUF, when drafting from one; a refusal when it is asked
    for without one."""
    mode = _mode(o)
    if mode == "draft" and not o.draft_model:
        raise ModelSpecError("--speculative draft needs --draft-model PATH.")
    if mode != "draft":
        return None
    return resolve_model(o.draft_model, ctx.models).path


def _named(value: str) -> AdapterSpec:
    spec = parse_lora(value)
    if spec.name is None:
        raise ModelSpecError(f"--lora-modules {value!r}: give NAME=PATH[:SCALE].")
    return spec


def _build(ctx: BuildContext, o: LlamaCppOptions, fitted: Fitted) -> list[Built]:
    from llmkit.engines.llamacpp.engine import LlamaCppEngine, gguf_family, thinking_capability
    from llmkit.engines.llamacpp.model import LoadOptions
    from llmkit.engines.llamacpp.rerank import model_capabilities
    from llmkit.engines.llamacpp.weights import SharedWeights

    model = resolve_model(ctx.model, ctx.models)
    estimate = fitted.estimate
    # One llama_model for the base and every served adapter (``weights``).
    weights = SharedWeights(str(model.path))
    # Each context keeps its own host cache: the one budget, split between them.
    host_mib = _host_cache_mib(o) // (1 + len(fitted.served))

    def engine(adapters: tuple[Adapter, ...], base: str | None) -> LlamaCppEngine:
        return LlamaCppEngine(
            LoadOptions(
                path=str(model.path),
                n_ctx=estimate.context,  # the context the fit check chose, no other
                n_threads=o.threads,
                parallel=estimate.sequences,  # what the fit check chose, as n_ctx
                kv_cells=estimate.kv_tokens,
                host_cache_mib=host_mib,
                on_progress=ctx.on_progress,
                weights=weights,
                adapters=tuple((str(a.gguf), a.spec.scale, a.spec.label) for a in adapters),
                mmproj=str(fitted.projector) if fitted.projector else None,
                speculative=_mode(o),
                draft_model=str(fitted.draft) if fitted.draft else None,
            ),
            max_queue=o.max_queue,
            base=base,
        )

    describe = describe_files("llama.cpp", model.path, estimate.context)
    # Listings tell chat models from embedding models before the model first loads.
    with contextlib.suppress(OSError, ValueError):  # a header it cannot read: the defaults
        header = read_gguf_header(model.path)
        caps = model_capabilities(header.fields, (n for n, *_ in header.tensors))
        caps = thinking_capability(caps, gguf_family(header.fields))
        if fitted.projector is not None:
            caps = (*caps, "vision")
        describe = replace(describe, capabilities=caps)
    # A made or an Ollama model's defaults: the served model applies them to each request.
    made = model.entry.modelfile if model.entry else None
    created = file_mtime(model.path)
    out = [Built(model.name, engine(fitted.own, None), describe, created, modelfile=made)]
    base_name = ctx.served_names[0] if ctx.served_names else model.name
    for a in fitted.served:
        # Listed as the base with its adapter; /api/show's Modelfile says ADAPTER.
        own = Modelfile(adapters=(str(a.gguf),))
        lora = {"base_model": base_name, "adapters": a.spec.label}
        seen = replace(describe, details={**describe.details, **lora})
        out.append(Built(a.spec.label, engine((a,), base_name), seen, created, own, base=base_name))
    return out


def _host_cache_mib(o: LlamaCppOptions) -> int:
    """``--kv-host-cache`` as given; by default at most a quarter of the RAM available
    now, so saved sequences never crowd out the machine's other programs."""
    if "kv_host_cache" in o.model_fields_set:
        return o.kv_host_cache
    return min(o.kv_host_cache, available_ram() // 4 >> 20)


def _reranker_context(model: ResolvedModel) -> int | None:
    """For a reranker, the context its (never used) generation KV pool gets: one
    pair's worth, as its rank context reads at most; None for any other model. A
    Qwen3-Reranker is trained on 40k tokens: a pool of that, x --parallel, for
    nothing."""
    from llmkit.engines.llamacpp.embed import EMBED_CONTEXT
    from llmkit.engines.llamacpp.rerank import is_reranker

    try:
        header = read_gguf_header(model.path)
    except ModelSpecError:
        return None
    if not is_reranker(header.fields, (n for n, *_ in header.tensors)):
        return None
    arch = header.fields.get("general.architecture") or "llama"
    trained = header.fields.get(f"{arch}.context_length")
    return (
        min(EMBED_CONTEXT, trained) if isinstance(trained, int) and trained > 0 else EMBED_CONTEXT
    )


def _modelfile_context(model: ResolvedModel) -> int | None:
    """The context the model's Modelfile serves it with (its ``PARAMETER num_ctx``)."""
    made = model.entry.modelfile if model.entry else None
    return made.num_ctx if made else None


SPEC = EngineSpec(
    name="llamacpp",
    summary="GGUF models through llama.cpp on the CPU, the default",
    options=LlamaCppOptions,
    fit=_fit,
    build=_build,
    aliases=("llama.cpp", "llama-cpp"),
    doctor=build_checks,
)
