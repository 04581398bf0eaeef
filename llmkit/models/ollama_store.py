"""The models an Ollama install already holds, read in place (nothing copied,
nothing written): ``<OLLAMA_MODELS>/manifests/<host>/<namespace>/<name>/<tag>``
are JSON manifests whose layers point at ``blobs/sha256-<hex>``. The layer of
media type ``application/vnd.ollama.image.model`` is the GGUF; ``.system``,
``.params`` and ``.template`` layers say how Ollama runs it.

Names are Ollama's own: ``llama3.2:latest`` for the library, ``user/name:tag``
for another namespace, ``host/namespace/name:tag`` for another registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmkit.models.catalog import CatalogEntry
from llmkit.models.preset import Preset

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
    return CatalogEntry(
        name=ollama_name(manifest, root / "manifests"),
        path=model,
        source="ollama",
        preset=_preset(layers),
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


def _preset(layers: dict[str, Path]) -> Preset:
    params: dict[str, Any] = {}
    raw = _text(layers.get("params"))
    if raw:
        try:
            loaded = json.loads(raw)
            params = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            params = {}
    stop = params.get("stop", [])
    stop = [stop] if isinstance(stop, str) else stop
    num_ctx = params.get("num_ctx")
    return Preset(
        system=_text(layers.get("system")),
        stop=tuple(s for s in stop if isinstance(s, str) and s) if isinstance(stop, list) else (),
        num_ctx=num_ctx if isinstance(num_ctx, int) and num_ctx > 0 else None,
        template=_text(layers.get("template")),
        parameters=params,
    )
