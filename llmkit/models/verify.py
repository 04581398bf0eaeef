"""Checking pulled files against the digests their hub gave (``RemoteFile.sha256``,
known for the files a hub keeps in LFS: the weights), as Ollama verifies each
layer's sha256 before it writes the manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from llmkit.errors import UpstreamError
from llmkit.models.hubs import RemoteFile


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify(directory: Path, files: Iterable[RemoteFile]) -> int:
    """Hash each file with a known digest; a mismatch removes the file (the next
    pull fetches it again) and raises. Returns how many files were checked."""
    checked = 0
    for f in files:
        if not f.sha256:
            continue
        path = directory / f.path
        got = sha256_of(path)
        if got != f.sha256:
            path.unlink(missing_ok=True)
            raise UpstreamError(
                f"{f.path} arrived corrupted: its sha256 is {got}, the hub says {f.sha256}; "
                "it was removed, pull again."
            )
        checked += 1
    return checked
