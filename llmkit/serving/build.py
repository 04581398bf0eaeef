"""From settings to served models: which models (``model_entries``: the config
file's list, or one per ``--model``), each on its engine with its options
validated by that engine, checked to fit, then built (``build_models``) and put
in the registry under their names (``build_registry``). Nothing loads here.

A setting that does not apply to the chosen engine, a missing extra (torch,
vLLM) or an upstream URL without a dialect is refused with what to do, not
discovered half-way through serving.
"""

from __future__ import annotations

from collections.abc import Callable

from llmkit.config.file import COMMON_FIELDS, ModelEntry
from llmkit.config.settings import ServeSettings
from llmkit.core.durations import parse_keep_alive
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.engines.spec import BuildContext, EngineSpecs
from llmkit.env import Environment
from llmkit.errors import ConfigError

Progress = Callable[[float], None] | None


def model_entries(settings: ServeSettings, specs: EngineSpecs) -> list[ModelEntry]:
    """The models to serve: the config file's list, or one per ``--model`` (the
    bundled model when none is named)."""
    given = settings.model_fields_set
    if settings.file_models:
        if settings.model or settings.served_model_name:
            raise ConfigError(
                f"Models come from {settings.config} or from --model, not both: "
                "add this one (or its served_model_name) to the file's 'models' list."
            )
        entries = []
        for entry in settings.file_models:
            entry = entry.model_copy(update={"defaults": dict(settings.options)})
            if "engine" not in entry.model_fields_set:
                entry.engine = specs.implied_engine(entry.options) or settings.engine
            for k in ("load", "keep_alive", "reasoning_budget"):
                if k not in entry.model_fields_set:
                    setattr(entry, k, getattr(settings, k))
            entry.engine = _engine(specs, entry)
            entries.append(entry)
        return entries
    specs_given: list[str | None] = list(settings.model) or [None]
    if len(specs_given) > 1 and settings.served_model_name:
        raise ConfigError(
            "--served-model-name names one model; to name each of several models, "
            "list them in a config file (--config models.yaml)."
        )
    # One model from flags: every setting given is the model's own, and must apply.
    common = {k: getattr(settings, k) for k in given & set(COMMON_FIELDS)}
    if "engine" not in common:
        common["engine"] = specs.implied_engine(settings.options) or settings.engine
    return [
        ModelEntry.model_validate(
            {
                **common,
                "model": spec,
                "served_model_name": list(settings.served_model_name),
                "options": dict(settings.options),
            }
        )
        for spec in specs_given
    ]


def _engine(specs: EngineSpecs, entry: ModelEntry) -> str:
    try:
        return specs.canonical(entry.engine)
    except ConfigError as e:
        raise ConfigError(entry.where + e.message) from None


def build_models(
    entry: ModelEntry, specs: EngineSpecs, env: Environment, on_progress: Progress = None
) -> list[ServedModel]:
    """The served models of one entry, on its engine; checked to fit, not loaded."""
    spec = specs.get(_engine(specs, entry))
    opts = spec.validate(entry.engine_options(set(spec.options.model_fields)), where=entry.where)
    ctx = BuildContext(
        model=entry.model,
        served_names=tuple(entry.served_model_name),
        models=env.models(),
        on_progress=on_progress,
        where=entry.where,
        environ=dict(env.values),
    )
    fit = spec.fit(ctx, opts) if spec.fit is not None else None
    return [
        ServedModel(
            # An adapter keeps its own name; the entry's names are the base model's.
            names=[built.name] if built.base else (entry.served_model_name or [built.name]),
            engine=built.engine,
            keep_alive=parse_keep_alive(entry.keep_alive),
            reasoning_budget=entry.reasoning_budget if entry.reasoning_budget >= 0 else None,
            preload=entry.load == "startup",
            created=built.created,
            describe=built.describe,
            modelfile=built.modelfile,
        )
        for built in spec.build(ctx, opts, fit)
    ]


def build_registry(
    settings: ServeSettings,
    specs: EngineSpecs,
    env: Environment,
    on_progress: Progress = None,
) -> ModelRegistry:
    """Every model the settings name (``--model``, repeated, or a config file's
    list), each on its engine; nothing is loaded yet."""
    registry = ModelRegistry()
    for entry in model_entries(settings, specs):
        for served in build_models(entry, specs, env, on_progress):
            try:
                registry.add(served)
            except ValueError as e:
                raise ConfigError(f"{entry.where}{e}; give each model its own names.") from None
    return registry
