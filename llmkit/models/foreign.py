"""GGUF files other tools already keep on this machine, listed and served in
place (never copied): Ollama's models folder (``ollama_store``), the Hugging
Face cache and LM Studio's models folder. ``ModelsSettings.other_models`` says
which to look in (``LLMKIT_OTHER_MODELS``); ``machine_catalog`` is the catalog
with them in it.

    Hugging Face: <HF_HOME>/hub/models--<owner>--<name>/snapshots/<rev>/...gguf
                  named owner/name (owner/name:<quant> when it holds several)
    LM Studio:    <folder>/<publisher>/<repo>/...gguf, named publisher/repo (:<quant>)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from llmkit.env import ModelsSettings
from llmkit.models.catalog import Catalog, CatalogEntry, gguf_tag
from llmkit.models.gguf_header import SHARD_RE
from llmkit.models.ollama_store import ollama_entries

LMSTUDIO_FOLDERS = ("~/.lmstudio/models", "~/.cache/lm-studio/models")


def machine_catalog(settings: ModelsSettings) -> Catalog:
    """The catalog of ``settings.models_dir``, then the GGUFs other tools keep."""
    return Catalog(settings.models_dir, elsewhere=partial(foreign_entries, settings))


def foreign_entries(settings: ModelsSettings) -> list[CatalogEntry]:
    """Every GGUF the tools named in ``settings.other_models`` hold, by tool."""
    found: list[CatalogEntry] = []
    if "ollama" in settings.other_models:
        found.extend(ollama_entries(settings.ollama_models))
    if "hf-cache" in settings.other_models:
        found.extend(hf_cache_entries(settings.hf_home / "hub"))
    if "lmstudio" in settings.other_models:
        found.extend(lmstudio_entries(lmstudio_folder(settings)))
    return found


def lmstudio_folder(settings: ModelsSettings) -> Path | None:
    if settings.lmstudio_models is not None:
        return settings.lmstudio_models
    for folder in LMSTUDIO_FOLDERS:
        path = Path(folder).expanduser()
        if path.is_dir():
            return path
    return None


def hf_cache_entries(hub: Path) -> list[CatalogEntry]:
    if not hub.is_dir():
        return []
    out = []
    for repo in sorted(hub.glob("models--*")):
        _, owner, *name = repo.name.split("--")
        snapshot = _snapshot(repo)
        if snapshot is not None and name:
            out.extend(_named(f"{owner}/{'--'.join(name)}", _ggufs(snapshot), "hf-cache"))
    return out


def _snapshot(repo: Path) -> Path | None:
    """The snapshot ``refs/main`` points at, else the newest one."""
    try:
        main = repo / "snapshots" / (repo / "refs" / "main").read_text().strip()
        if main.is_dir():
            return main
    except OSError:
        pass
    snapshots = [p for p in (repo / "snapshots").glob("*") if p.is_dir()]
    return max(snapshots, key=lambda p: p.stat().st_mtime, default=None)


def lmstudio_entries(folder: Path | None) -> list[CatalogEntry]:
    if folder is None or not folder.is_dir():
        return []
    out = []
    for repo in sorted(p for p in folder.glob("*/*") if p.is_dir()):
        out.extend(_named(f"{repo.parent.name}/{repo.name}", _ggufs(repo), "lmstudio"))
    return out


def _ggufs(directory: Path) -> list[Path]:
    """The models in a folder: first shards only, no vision projectors."""
    return sorted(
        p
        for p in directory.rglob("*.gguf")
        if p.is_file()
        and "mmproj" not in p.name.lower()
        and (not (m := SHARD_RE.search(p.name)) or m.group(1) == "00001")
    )


def _named(base: str, ggufs: list[Path], source: str) -> list[CatalogEntry]:
    if len(ggufs) == 1:
        return [CatalogEntry(name=base, path=ggufs[0], source=source)]
    return [CatalogEntry(name=f"{base}:{gguf_tag(p)}", path=p, source=source) for p in ggufs]
