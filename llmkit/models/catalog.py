"""The local catalog: the models on this machine, by name.

A pulled repository lives in ``<models_dir>/<owner>/<name>/`` as plain files
(``models_dir`` is ``--cache-dir``, ``LLMKIT_MODELS`` or ``<data dir>/models``),
with a ``.llmkit.json`` manifest saying where it came from. A pull writes the
manifest first, marked incomplete, and completes it at the end, so an interrupted
pull shows up as such and the next ``pull`` resumes into the same directory.

A directory holding several GGUF files (one per quantisation) gives one entry
per file, named ``owner/name:tag``, the tag being the quantisation in the file
name (``q4_k_m``). The bundled model is always the first entry; the GGUFs other
tools keep (Ollama, the Hugging Face cache, LM Studio) come last, when the
catalog is given a way to find them (``foreign.machine_catalog`` gives it theirs;
this module does not import ``foreign``, which builds on it).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from llmkit.errors import ModelSpecError
from llmkit.models.bundled import BUNDLED_NAME, bundled_model_path
from llmkit.models.gguf_header import SHARD_RE, gguf_shards, is_gguf
from llmkit.models.modelfile import Modelfile

MANIFEST = ".llmkit.json"
# One part of a repo id, as the hubs allow them: never a path ("..", "/", "\\").
_REPO_PART = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
#: The quantisation at the end of a GGUF file name: "...-Q4_K_M.gguf", "...f16.gguf".
_QUANT_RE = re.compile(r"(i?q\d_(?:k_[sml]|k|\d|xxs|xs|s|m|nl)|q\d_k|bf16|f16|f32)$", re.IGNORECASE)


@dataclass(frozen=True)
class CatalogEntry:
    """One model this machine can serve or size, by name."""

    name: str  # the repo id as pulled ("Qwen/Qwen2-0.5B-Instruct-GGUF"), with ":tag" for variants
    path: Path  # the .gguf file to load, or the model directory
    source: str  # "hf", "hf-mirror", "modelscope", or "bundled"
    directory: Path | None = None  # the pulled repository's directory
    revision: str | None = None
    aliases: tuple[str, ...] = ()
    complete: bool = True
    pulled_at: str | None = None
    # The model's defaults: a made model's (create/copy), or an Ollama model's layers.
    modelfile: Modelfile | None = None
    # A vision model's projector (an mmproj GGUF) that came with it: served with it.
    projector: Path | None = None

    @property
    def format(self) -> str:
        return "gguf" if is_gguf(self.path) else "safetensors"

    def size_on_disk(self) -> int:
        if self.path.is_file():
            return sum(p.stat().st_size for p in gguf_shards(self.path) if p.is_file())
        return sum(p.stat().st_size for p in _model_files(self.path))


@dataclass(frozen=True)
class Catalog:
    models_dir: Path
    # Other tools' GGUFs, listed after this machine's own (``foreign.machine_catalog``).
    elsewhere: Callable[[], list[CatalogEntry]] | None = None

    def lookup(self, name: str) -> CatalogEntry | None:
        """The entry an Ollama-style name means (``name`` or ``name:latest``), or None."""
        for spec in dict.fromkeys((name, name.removesuffix(":latest"))):
            try:
                return self.find(spec)
            except ModelSpecError:
                continue
        # "owner/repo:q8_0" when only that quantisation was pulled (its entry is untagged).
        base, _, tag = name.rpartition(":")
        if base and "/" not in tag:
            try:
                entry = self.find(base)
            except ModelSpecError:
                return None
            if entry.path.is_file() and gguf_tag(entry.path) == tag.lower():
                return entry
        return None

    def entries(self) -> list[CatalogEntry]:
        bundled = CatalogEntry(name=BUNDLED_NAME, path=Path(bundled_model_path()), source="bundled")
        found = []
        if self.models_dir.is_dir():
            for manifest in [
                *self.models_dir.glob(f"*/{MANIFEST}"),
                *self.models_dir.glob(f"*/*/{MANIFEST}"),
            ]:
                found.extend(_read_entries(manifest))
        others = self.elsewhere() if self.elsewhere is not None else []
        return [bundled, *sorted(found, key=lambda e: e.name.lower()), *others]

    def find(self, spec: str) -> CatalogEntry:
        """The entry ``spec`` names: its name or repo id (any case), a short name it was
        pulled as, or the part after the owner when only one entry has it."""
        entries = self.entries()
        want = spec.lower()
        hits = [e for e in entries if want in _keys(e)]
        if not hits and ":" not in want:  # Ollama's habit: "llama3.2" is "llama3.2:latest"
            hits = [e for e in entries if f"{want}:latest" in _keys(e)]
        if not hits:
            short = [e for e in entries if want in {k.split("/", 1)[-1] for k in _keys(e)}]
            hits = short if len(short) == 1 else []
        if not hits:
            # "repo" alone when it holds several GGUFs: make the user choose one.
            variants = [
                e
                for e in entries
                if ":" in e.name and want in {b for k in _keys(e) for b in _bases(k)}
            ]
            if variants:
                names = ", ".join(e.name for e in variants)
                raise ModelSpecError(f"'{spec}' holds several GGUF files; name one: {names}.")
            raise ModelSpecError(
                f"No model named '{spec}' here. `llmkit list` shows the models on this "
                f"machine; `llmkit pull {spec}` fetches one."
            )
        return hits[0]

    def directory_for(self, repo: str) -> Path:
        """Where ``repo`` lives: always inside ``models_dir``, whatever the id says."""
        parts = repo.split("/")
        if not 1 <= len(parts) <= 2 or not all(_REPO_PART.fullmatch(p) for p in parts):
            raise ModelSpecError(
                f"'{repo}' is not a repository id: owner/name, each of letters, digits, "
                "'-', '_' and '.' (and not '.' or '..')."
            )
        return self.models_dir.joinpath(*parts)

    def begin(self, repo: str, *, source: str, revision: str | None, alias: str | None) -> Path:
        """Record a pull about to start; returns the directory to download into."""
        directory = self.directory_for(repo)
        directory.mkdir(parents=True, exist_ok=True)
        old = _read_manifest(directory / MANIFEST) or {}
        aliases = sorted({*old.get("aliases", []), *([alias] if alias else [])})
        _write_manifest(
            directory,
            {
                "repo": repo,
                "source": source,
                "revision": revision,
                "aliases": aliases,
                "complete": False,
                "pulled_at": None,
            },
        )
        return directory

    def finish(self, repo: str) -> list[CatalogEntry]:
        directory = self.directory_for(repo)
        data = _read_manifest(directory / MANIFEST) or {"repo": repo}
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        _write_manifest(directory, {**data, "complete": True, "pulled_at": now})
        return _read_entries(directory / MANIFEST)

    def remove(self, entry: CatalogEntry) -> list[Path]:
        """Delete an entry's files: one GGUF of several, or the whole directory."""
        if entry.source == "bundled":
            raise ModelSpecError(f"{entry.name} ships with llmkit and cannot be removed.")
        if entry.directory is None:
            raise ModelSpecError(
                f"{entry.name} belongs to {entry.source} ({entry.path}); llmkit only reads it. "
                "Remove it with that tool."
            )
        assert entry.directory is not None
        siblings = [e for e in _read_entries(entry.directory / MANIFEST) if e.path != entry.path]
        if entry.format == "gguf" and siblings:
            shards = gguf_shards(entry.path)
            for p in shards:
                p.unlink(missing_ok=True)
            return shards
        shutil.rmtree(entry.directory)
        owner = entry.directory.parent
        if owner != self.models_dir and owner.is_dir() and not any(owner.iterdir()):
            owner.rmdir()
        return [entry.directory]


def gguf_tag(path: Path) -> str:
    """'qwen2-0_5b-instruct-q4_k_m.gguf' -> 'q4_k_m' (else the file's stem)."""
    stem = SHARD_RE.sub("", path.name).removesuffix(".gguf").removesuffix(".GGUF")
    m = _QUANT_RE.search(stem)
    return (m.group(1) if m else stem).lower()


def _keys(e: CatalogEntry) -> set[str]:
    """Every name ``e`` answers to, lower-cased: its own and its aliases (with its tag)."""
    tag = e.name.partition(":")[2]
    return {k.lower() for k in (e.name, *(f"{a}:{tag}" if tag else a for a in e.aliases))}


def _bases(key: str) -> set[str]:
    base = key.rsplit(":", 1)[0]
    return {base, base.split("/", 1)[-1]}


def _model_files(directory: Path) -> list[Path]:
    """Files that belong to the model: not the hubs' metadata, partial downloads or ours."""
    out = []
    for p in directory.rglob("*"):
        rel = p.relative_to(directory).parts
        if rel[0] in (".cache", MANIFEST) or p.name.endswith(".incomplete") or not p.is_file():
            continue
        out.append(p)
    return out


def find_projector(files: list[Path]) -> Path | None:
    """The vision projector among a repository's files (``mmproj*.gguf``, as
    llama.cpp's converter and the GGUF publishers name it): the F16 one where
    there are several (the precision llama.cpp's server downloads by default)."""
    found = sorted(p for p in files if p.suffix.lower() == ".gguf" and "mmproj" in p.name.lower())
    if not found:
        return None
    return next((p for p in found if "f16" in p.name.lower()), found[0])


def _read_entries(manifest: Path) -> list[CatalogEntry]:
    data = _read_manifest(manifest)
    if data is None:
        return []
    directory = manifest.parent
    base = CatalogEntry(
        name=data.get("repo") or directory.name,
        path=directory,
        source=data.get("source", "?"),
        directory=directory,
        revision=data.get("revision"),
        aliases=tuple(data.get("aliases", ())),
        complete=bool(data.get("complete")),
        pulled_at=data.get("pulled_at"),
        modelfile=Modelfile.from_manifest(data.get("modelfile")),
    )
    ggufs = sorted(
        p
        for p in _model_files(directory)
        if p.suffix.lower() == ".gguf"
        and "mmproj" not in p.name.lower()  # vision projectors are not models on their own
        and (not SHARD_RE.search(p.name) or SHARD_RE.search(p.name).group(1) == "00001")
    )
    base = replace(base, projector=find_projector(_model_files(directory)))
    if len(ggufs) <= 1:
        return [replace(base, path=ggufs[0] if ggufs else directory)]
    return [replace(base, name=f"{base.name}:{gguf_tag(p)}", path=p) for p in ggufs]


def _read_manifest(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_manifest(directory: Path, data: dict) -> None:
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(directory / MANIFEST)
