"""The models an Ollama install already holds, read in place (nothing copied,
nothing written): ``<OLLAMA_MODELS>/manifests/<host>/<namespace>/<name>/<tag>``
are JSON manifests whose layers point at ``blobs/sha256-<hex>``. The layer of
media type ``application/vnd.ollama.image.model`` is the GGUF; ``.system``,
``.params``, ``.template``, ``.messages`` and ``.adapter`` (a GGUF LoRA) layers say
how Ollama runs it (a ``.projector`` layer: a vision model's projector, served with
it): the entry's ``Modelfile``, as a model made with Ollama's
``create`` would have it.

Names are Ollama's own: ``llama3.2:latest`` for the library, ``user/name:tag``
for another namespace, ``host/namespace/name:tag`` for another registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmkit.models.catalog import CatalogEntry
from llmkit.models.modelfile import Modelfile

_MEDIA = "application/vnd.ollama.image."
_REGISTRY = "registry.ollama.ai"


def ollama_entries(root: Path) -> list[CatalogEntry]:
    """One entry per manifest whose model blob is on disk."""
    manifests = root / "manifests"
    if not manifests.is_dir():
        return []
    out = []
    for path in sorted(manifests.glob("*/*/*/*")):
        entry = _entry(root, path)
        if entry is not None:
            out.append(entry)
    return out


def ollama_name(manifest: Path, manifests: Path) -> str:
    host, namespace, name, tag = manifest.relative_to(manifests).parts
    if host == _REGISTRY:
        return f"{name}:{tag}" if namespace == "library" else f"{namespace}/{name}:{tag}"
    return f"{host}/{namespace}/{name}:{tag}"


def _entry(root: Path, manifest: Path) -> CatalogEntry | None:
    try:
        data = json.loads(manifest.read_text())
        layers = {
            str(layer["mediaType"]).removeprefix(_MEDIA): root / "blobs" / _blob(layer["digest"])
            for layer in reversed(data["layers"])  # the first of a type wins
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a manifest (or a half-written one): not a model
    model = layers.get("model")
    if model is None or not model.is_file():
        return None
    try:  # every adapter layer (a model may stack several), in the manifest's order
        adapters = [
            str(root / "blobs" / _blob(layer["digest"]))
            for layer in data["layers"]
            if layer.get("mediaType") == _MEDIA + "adapter"
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return CatalogEntry(
        name=ollama_name(manifest, root / "manifests"),
        path=model,
        source="ollama",
        modelfile=_modelfile(layers, adapters),
        # A vision model's projector is a layer of its own (Ollama's ``projector``).
        projector=layers["projector"] if layers.get("projector", Path()).is_file() else None,
    )


def _blob(digest: str) -> str:
    """'sha256:ab12..' -> 'sha256-ab12..' (never a path: a digest is hex)."""
    algo, _, hexes = str(digest).partition(":")
    if not algo.isalnum() or not hexes.isalnum():
        raise ValueError(digest)
    return f"{algo}-{hexes}"


def _text(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _json(path: Path | None) -> Any:
    raw = _text(path)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _modelfile(layers: dict[str, Path], adapters: list[str]) -> Modelfile | None:
    params = _json(layers.get("params"))
    turns = _json(layers.get("messages"))
    turns = turns if isinstance(turns, list) else []
    turns = [m for m in turns if isinstance(m, dict) and isinstance(m.get("role"), str)]
    made = Modelfile.from_manifest(
        {
            "system": _text(layers.get("system")),
            "template": _text(layers.get("template")),
            "parameters": params if isinstance(params, dict) else {},
            "messages": turns,
            "adapters": adapters,  # GGUF LoRA blobs: the llama.cpp engine applies them
        }
    )
    return made if made != Modelfile() else None
