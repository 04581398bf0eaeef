"""Models made on this machine rather than pulled: Ollama's ``create`` and ``copy``,
and the blobs a client uploads before ``create``.

A made model is a catalog directory like a pulled one (``.llmkit.json`` plus its
GGUF file), with ``source: "created"`` and a ``modelfile`` in the manifest: the
parts of an Ollama Modelfile llmkit keeps (``modelfile.py``). The GGUF is a
hard link to the one it was made from (a symbolic link across file systems), so
a copy costs no space and survives the deletion of its source, as Ollama's
shared blobs do.

Blobs live in ``<models_dir>/.blobs/sha256-<hex>``, named by their digest,
which is checked as the upload arrives.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmkit.errors import InvalidRequestError, ModelSpecError
from llmkit.models.catalog import MANIFEST, Catalog, CatalogEntry
from llmkit.models.modelfile import Modelfile

DIGEST_RE = re.compile(r"sha256[:-]([0-9a-f]{64})")
# One part of an Ollama model name: "mario", "user/mario", each with an optional ":tag".
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def split_name(name: str) -> tuple[str, str]:
    """'mario' -> ('mario', 'latest'); 'user/mario:v2' -> ('user/mario', 'v2')."""
    base, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    return base, tag or "latest"


def canonical(name: str) -> str:
    """The name a made model is stored under: untagged when its tag is ``latest``."""
    base, tag = split_name(name)
    return base if tag == "latest" else f"{base}:{tag}"


def create(
    catalog: Catalog, name: str, gguf: Path, mf: Modelfile | None, filename: str | None = None
) -> CatalogEntry:
    """Make ``name`` from the GGUF file ``gguf`` (replacing a made model of that name);
    ``filename``: what to call the file (a blob's name is its digest)."""
    directory = check_name(catalog, name)
    filename = filename or gguf.name
    if not gguf.is_file() or not filename.lower().endswith(".gguf"):
        raise ModelSpecError(f"{gguf} is not a .gguf file; a model is made from GGUF weights.")
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.glob("*.gguf"):
        p.unlink()
    target = directory / filename
    try:
        os.link(gguf.resolve(), target)
    except OSError:  # another file system (the bundled model): a symbolic link instead
        target.symlink_to(gguf.resolve())
    data = {
        "repo": canonical(name),
        "source": "created",
        "revision": None,
        "aliases": [],
        "complete": True,
        "pulled_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "modelfile": mf.to_manifest() if mf is not None else None,
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(directory / MANIFEST)
    return catalog.find(canonical(name))


def check_name(catalog: Catalog, name: str) -> Path:
    """The directory a made model ``name`` goes to; refuses a malformed name, or the
    name of a pulled model (checked before long work such as a conversion)."""
    base, tag = split_name(name)
    if not _NAME_RE.fullmatch(base) or not _TAG_RE.fullmatch(tag):
        raise InvalidRequestError(
            f"'{name}' is not a model name: NAME or OWNER/NAME, with an optional :TAG, "
            "each of letters, digits, '-', '_' and '.'.",
            param="model",
        )
    folder = base if tag == "latest" else f"{base}-{tag}"
    directory = catalog.models_dir.joinpath(*folder.split("/"))
    old = _manifest(directory)
    if old is not None and old.get("source") != "created":
        raise InvalidRequestError(
            f"{canonical(name)} is a pulled model; give the new model another name.", param="model"
        )
    return directory


def _manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Blobs:
    """Uploaded files, by digest, for ``create`` to use."""

    def __init__(self, models_dir: Path) -> None:
        self.directory = models_dir / ".blobs"

    def path(self, digest: str) -> Path:
        m = DIGEST_RE.fullmatch(digest)
        if m is None:
            raise InvalidRequestError(
                f"'{digest}' is not a digest: sha256:<64 hex digits>.", param="digest"
            )
        return self.directory / f"sha256-{m.group(1)}"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    async def receive(self, digest: str, chunks: AsyncIterator[bytes]) -> Path:
        """Store an upload under its digest; one whose bytes hash otherwise is refused
        and nothing is kept."""
        final = self.path(digest)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + f".{os.getpid()}.{id(chunks)}.partial")
        h = hashlib.sha256()
        try:
            with tmp.open("wb") as f:
                async for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
            got = "sha256:" + h.hexdigest()
            if got != "sha256:" + final.name.removeprefix("sha256-"):
                raise InvalidRequestError(f"digest mismatch: the upload's digest is {got}")
            tmp.replace(final)
        finally:
            tmp.unlink(missing_ok=True)
        return final
