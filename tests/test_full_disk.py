"""A full disk, for real: a small tmpfs the test mounts (the suite runs as root,
as CI does). Writing a conversation onto it, or pulling a model onto it, gives a
clear error and keeps everything written before."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmkit.env import ModelsSettings
from llmkit.errors import DiskFullError, StoreError
from llmkit.memory.store import Store
from llmkit.models.download import PullRequest, pull
from tests.standin_hub import StandinHub
from tests.tiny_models import hf_repo


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_keeps_every_committed_turn_and_says_so(tmp_path):
    with small_disk(tmp_path / "disk", "600k") as disk:
        url = f"sqlite:///{disk / 'llmkit.db'}"
        store = Store(url)
        store.get_or_create("long")
        written = 0
        with pytest.raises(StoreError) as failed:
            for i in range(10_000):
                store.append("long", "user", f"{i}:" + "x" * 8000)
                written += 1
        assert "is full" in failed.value.message and "Free some space" in failed.value.message
        assert written > 10
        store.close()
        with Store(url) as again:  # nothing half-written: every turn before is there
            entries = again.entries("long")
            assert [e.content.split(":")[0] for e in entries] == [str(i) for i in range(written)]


def test_a_pull_onto_a_full_disk_stops_at_once_and_keeps_the_partial_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    repos = {"org/tiny": hf_repo(vocab=49152)}  # a 12.6 MB weights file
    with small_disk(tmp_path / "models", "4m") as models, StandinHub("hf", repos) as hub:
        settings = ModelsSettings(
            models_dir=models, hf_endpoint=hub.url, sources=["hf", "modelscope"]
        )
        with pytest.raises(DiskFullError) as full:
            pull(PullRequest("org/tiny"), settings)
        assert "disk is full" in full.value.message and "resumes" in full.value.message
        partial = [p for p in (models / "org/tiny").iterdir() if p.name.endswith(".incomplete")]
        assert partial and partial[0].stat().st_size > 1_000_000  # kept for the next pull
