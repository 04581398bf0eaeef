"""Turn whatever a user calls a model into files: ``--model`` and ``NAME``
arguments accept a catalog name, a pulled repository id or short name, a local
Hugging Face directory, or a .gguf path; nothing at all means the bundled model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from llmkit.env import ModelsSettings
from llmkit.errors import ModelSpecError
from llmkit.models.bundled import BUNDLED_NAME, bundled_model_path
from llmkit.models.catalog import Catalog, CatalogEntry, find_projector, gguf_tag
from llmkit.models.foreign import machine_catalog
from llmkit.models.gguf_header import SHARD_RE, is_gguf


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # a .gguf file or a model directory
    name: str  # what to call it (the default served name)
    entry: CatalogEntry | None = None  # when it came from the catalog
    projector: Path | None = None  # a vision projector found beside it (not the catalog's)


def locate(spec: str | None, settings: ModelsSettings) -> ResolvedModel:
    """The files ``spec`` names, whatever their format."""
    if spec is None:
        return ResolvedModel(Path(bundled_model_path()), BUNDLED_NAME)
    path = Path(spec).expanduser()
    if path.exists():
        name = path.resolve().name
        return ResolvedModel(path, path.stem if path.is_file() else name)
    catalog = machine_catalog(settings)
    try:
        entry = catalog.find(spec)
    except ModelSpecError:
        if looks_like_path(spec):
            raise ModelSpecError(f"No such file or directory: {spec}") from None
        entry = _by_tag(spec, catalog, settings)
        if entry is None:
            raise
    if not entry.complete:
        raise ModelSpecError(
            f"The pull of {entry.name} did not finish; `llmkit pull {entry.name.split(':')[0]}` "
            "resumes it."
        )
    # Served as Ollama users call it: "llama3.2" (the Ollama routes add ":latest").
    return ResolvedModel(entry.path, entry.name.removesuffix(":latest"), entry)


def _by_tag(spec: str, catalog: Catalog, settings: ModelsSettings) -> CatalogEntry | None:
    """A catalog entry for an Ollama-style ``FAMILY:TAG`` (``tags.py``): ``NAME:latest``
    is ``NAME``; a tagged name pulled under its repository id is found by that id.
    None for a name that is no tagged one (the catalog's own error stands)."""
    from llmkit.models.tags import lookup, split_name, unknown_name

    tag = split_name(spec)[1]
    tried = [f"the models on this machine ({settings.models_dir}, and the bundled one)"]
    if tag == "latest" and ":" in spec:
        with contextlib.suppress(ModelSpecError):
            return catalog.find(spec.rsplit(":", 1)[0])
    target = None if "/" in spec else lookup(spec, settings.tags_file)
    if target is None:
        if ":" not in spec:
            return None
        raise unknown_name(spec, settings.tags_file, [*tried, "the tag catalog"])
    repos = sorted(set(target.repos.values()))
    for repo in repos:
        for name in (f"{repo}:{target.quant}", repo):
            with contextlib.suppress(ModelSpecError):
                return catalog.find(name)
    raise ModelSpecError(
        f"{spec} ({target.family}:{target.tag}, {', '.join(repos)}) is not on this machine; "
        f"`llmkit pull {spec}` fetches it (`--fit` takes the largest quantisation that fits)."
    )


def resolve_model(spec: str | None, settings: ModelsSettings) -> ResolvedModel:
    """What the llama.cpp engine can load for ``spec``: a .gguf file. A Hugging Face
    directory without one is refused with what to do instead."""
    found = locate(spec, settings)
    if found.path.is_file():
        if not is_gguf(found.path):
            raise ModelSpecError(f"{found.path} is not a .gguf file; llama.cpp loads GGUF only.")
        return found
    ggufs = sorted(
        p
        for p in found.path.rglob("*.gguf")
        if ".cache" not in p.relative_to(found.path).parts
        and "mmproj" not in p.name.lower()
        and (not SHARD_RE.search(p.name) or SHARD_RE.search(p.name).group(1) == "00001")
    )
    if len(ggufs) == 1:
        beside = find_projector([p for p in found.path.rglob("*.gguf") if ".cache" not in p.parts])
        return ResolvedModel(ggufs[0], found.name, found.entry, beside)
    if ggufs:
        tags = ", ".join(f"{found.name}:{gguf_tag(p)}" for p in ggufs)
        raise ModelSpecError(
            f"{found.path} holds several GGUF files; name one ({tags}) or give its path."
        )
    if (found.path / "config.json").is_file():
        raise ModelSpecError(
            f"{found.name} is a Hugging Face (safetensors) model: serve it with "
            "--engine transformers (or --engine vllm on a GPU). The llama.cpp engine loads "
            "GGUF files: pull a GGUF build instead, e.g. `llmkit pull OWNER/NAME-GGUF "
            "--include '*q4_k_m.gguf'`."
        )
    raise ModelSpecError(f"{found.path} holds no .gguf file and no config.json.")


def model_projector(model: ResolvedModel) -> Path | None:
    """The vision projector that came with ``model``: its catalog entry's (a pulled
    repository's ``mmproj*.gguf``, an Ollama model's projector layer), or one in the
    model directory it was found in; None for a text-only model."""
    if model.entry is not None and model.entry.projector is not None:
        return model.entry.projector
    return model.projector


def looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.lower().endswith(".gguf") or "\\" in spec
