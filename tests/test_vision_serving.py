"""Serving a vision model: its projector given as ``mmproj:`` in the config file
(llama-server's ``--mmproj``), or found without a flag in a pulled repository or
an Ollama model; ``vision`` among the capabilities Ollama's ``/api/show`` and
``/api/tags`` list (read with the ``ollama`` client), and in ``llmkit list`` /
``show``; a text-only model beside it lists none. One server for the module."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from click.testing import CliRunner

from llmkit.cli.main import cli
from llmkit.models.catalog import Catalog
from llmkit.models.ollama_store import ollama_entries
from tests.conftest import Server, start_server
from tests.tiny_vlm import TinyVlm

REPO = "org/tiny-vlm-GGUF"


def pull_like(models_dir: Path, vlm: TinyVlm) -> None:
    """The model as `llmkit pull` leaves a repository with a projector in it."""
    catalog = Catalog(models_dir)
    directory = catalog.begin(REPO, source="hf", revision="main", alias=None)
    shutil.copy(vlm.lm, directory / "tiny-vlm-F32.gguf")
    shutil.copy(vlm.mmproj, directory / "mmproj-tiny-vlm-F32.gguf")
    catalog.finish(REPO)


@pytest.fixture(scope="module")
def served(
    vlm: TinyVlm, bundled_path: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("vision-serving")
    pull_like(tmp / "home" / "models", vlm)
    config = tmp / "models.yaml"
    config.write_text(
        f"""
parallel: 1
max_model_len: 512
models:
  - model: {vlm.lm}
    mmproj: {vlm.mmproj}
    served_model_name: [vlm]
  - model: {REPO}
    served_model_name: [pulled]
  - model: {bundled_path}
    served_model_name: [text]
"""
    )
    s = start_server(tmp, "--config", str(config))
    yield s, tmp / "home"
    s.stop()


def test_api_show_and_tags_list_vision_for_models_with_a_projector(served) -> None:
    server, _ = served
    client = ollama.Client(host=server.url)
    for name in ("vlm", "pulled"):
        assert "vision" in (client.show(name).capabilities or [])
    assert "vision" not in (client.show("text").capabilities or [])
    # The ollama client's list drops capabilities: read the body itself.
    tags = httpx.get(server.url + "/api/tags").json()["models"]
    caps = {m["name"]: m["capabilities"] for m in tags}
    assert "vision" in caps["vlm:latest"] and "vision" not in caps["text:latest"]


def test_list_and_show_say_a_pulled_model_sees(served, monkeypatch) -> None:
    _, home = served
    monkeypatch.setenv("LLMKIT_HOME", str(home))
    rows = json.loads(CliRunner().invoke(cli, ["list", "--json"]).output)
    mine = next(r for r in rows if r["name"] == REPO)
    assert mine["projector"].endswith("mmproj-tiny-vlm-F32.gguf")
    assert next(r for r in rows if r["projector"] is None)  # the bundled model
    shown = CliRunner().invoke(cli, ["show", REPO]).output
    assert "vision         yes (projector " in shown
    table = CliRunner().invoke(cli, ["list"]).output
    assert any(line.startswith(REPO) and "gguf+vision" in line for line in table.splitlines())


def test_an_ollama_model_with_a_projector_layer_carries_it(tmp_path, vlm) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    layers = []
    for media, src in (("model", vlm.lm), ("projector", vlm.mmproj)):
        digest = media.encode().hex().ljust(64, "0")
        shutil.copy(src, blobs / f"sha256-{digest}")
        layers.append({"mediaType": f"application/vnd.ollama.image.{media}",
                       "digest": f"sha256:{digest}"})  # fmt: skip
    manifest = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "vlm" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": layers}))
    (entry,) = ollama_entries(tmp_path)
    assert entry.projector == blobs / f"sha256-{b'projector'.hex().ljust(64, '0')}"


def test_the_fit_check_counts_the_projector(vlm) -> None:
    from llmkit.errors import InsufficientMemoryError
    from llmkit.models.fit import fit_before_serving
    from llmkit.models.fit_companions import (
        IMAGE_EMBED_CACHE_BYTES,
        fit_projector,
        projector_compute_bytes,
    )
    from llmkit.models.gguf_header import read_gguf_header

    est = fit_before_serving(vlm.lm, "vlm", max_model_len=256, parallel=1, memory_gib=64)
    need = fit_projector(est, "vlm", vlm.mmproj, memory_gib=64)
    compute = projector_compute_bytes(read_gguf_header(vlm.mmproj).fields)
    assert compute > 0
    size = vlm.mmproj.stat().st_size
    assert need == est.per_device_bytes + size + compute + IMAGE_EMBED_CACHE_BYTES
    with pytest.raises(InsufficientMemoryError, match=r"projector mmproj\.gguf"):
        fit_projector(est, "vlm", vlm.mmproj, memory_gib=(need - 1) / 2**30)
