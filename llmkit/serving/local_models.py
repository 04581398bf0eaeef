"""The local catalog, served on demand: what lets a running server answer for a
model it was not started with, as Ollama answers for anything on its disk.

A request naming a model no served model has is looked up in the catalog
(``name`` or ``name:latest``; pulled, copied or created models, the bundled
one); a complete GGUF found there is built on the llama.cpp engine with the
server's engine settings (those that apply to it), fit-checked like a model
given at start-up, and served from then on under its catalog name, loading on
first use and unloading after the server's ``keep_alive``. A catalog model whose
file a configured model already serves, with the same Modelfile, becomes that
model's alias instead of a second copy in memory. File paths are never taken from a request: only
catalog names.

The configured models (``--model``, ``--config``) keep their names and settings;
a catalog model is served on demand only under a name none of them has.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from llmkit.config.file import ModelEntry
from llmkit.config.settings import ServeSettings
from llmkit.core.types import EngineInfo
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.engines.spec import EngineSpecs
from llmkit.env import Environment, ModelsSettings
from llmkit.models.catalog import Catalog, CatalogEntry
from llmkit.models.derived import Blobs
from llmkit.models.metadata import describe_files, file_mtime
from llmkit.serving.build import build_models

LORA_OPTIONS = ("lora", "lora_modules")

log = logging.getLogger("llmkit.registry")

#: The engine catalog models are served on (the one that loads GGUF in-process).
ENGINE = "llamacpp"


class LocalModels:
    """The registry's fallback: catalog models by name, built when first named."""

    def __init__(
        self, settings: ServeSettings, specs: EngineSpecs, env: Environment, registry: ModelRegistry
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.env = env
        self.registry = registry
        self.models: ModelsSettings = env.models()
        self.catalog = Catalog(self.models.models_dir)
        self.blobs = Blobs(self.models.models_dir)

    def __call__(self, name: str) -> ServedModel | None:
        entry = self.servable(name)
        if entry is None:
            return None
        same = self.serving(entry.path)
        # An alias only with the same defaults: a Modelfile makes another model of one file.
        if same is not None and entry.modelfile == same.modelfile:
            same.names.append(entry.name)
            return same
        spec = ModelEntry(
            model=entry.name,
            engine=ENGINE,
            load="first-use",
            keep_alive=self.settings.keep_alive,
            reasoning_budget=self.settings.reasoning_budget,
            # --lora and --lora-modules are the configured model's adapters, not every
            # catalog model's (a made model brings its own, its Modelfile's ADAPTER).
            defaults={k: v for k, v in self.settings.options.items() if k not in LORA_OPTIONS},
            where=f"{entry.name}: ",
        )
        served = build_models(spec, self.specs, self.env)[0]
        served.names = [entry.name]
        served.modelfile = entry.modelfile or served.modelfile
        served.on_demand = True
        self.registry.add(served)
        log.info("serving %s from the local catalog (%s); loads now", entry.name, entry.path)
        return served

    def servable(self, name: str) -> CatalogEntry | None:
        entry = self.catalog.lookup(name)
        if entry is None or not entry.complete or entry.format != "gguf":
            return None
        return entry

    def serving(self, path: Path) -> ServedModel | None:
        """The served model whose weights are the file ``path``, if any."""
        want = _real(path)
        for m in self.registry.models:
            if _real(Path(m.info.model)) == want:
                return m
        return None

    def listed(self) -> list[tuple[str, EngineInfo, int]]:
        """(name, description, file time) of each servable catalog model not served yet."""
        out = []
        for e in self.catalog.entries():
            # Not one a served name already answers for (that name means the served one).
            if self.registry.find(e.name) is not None or self.serving(e.path) is not None:
                continue
            if e.complete and e.format == "gguf":
                out.append((e.name, describe_files("llama.cpp", e.path, None), file_mtime(e.path)))
        return out

    async def forget(self, entry: CatalogEntry) -> None:
        """Stop serving what was built from ``entry`` (before its files go)."""
        for m in list(self.registry.models):
            if m.on_demand and entry.name in m.names:
                await m.unload()
                self.registry.remove(m)


def _real(path: Path) -> str:
    # Not resolved: a made model links to its source's file, and is a model of its own.
    return os.path.abspath(path)


def attach(
    settings: ServeSettings, specs: EngineSpecs, env: Environment, registry: ModelRegistry
) -> LocalModels | None:
    """Serve the catalog on demand, unless the server is told to serve only what it
    was configured with, or its engine is not the one that loads catalog GGUFs.
    Returns what the API manages the catalog through (None: model management off)."""
    registry.max_loaded = settings.max_loaded_models
    engine = specs.implied_engine(settings.options) or settings.engine
    if settings.no_model_management or specs.canonical(engine) != ENGINE:
        return None
    local = LocalModels(settings, specs, env, registry)
    registry.fallback = local
    return local
