"""``LocalCatalog``: what the API needs of the server's local catalog, the models on
disk that a running server serves on demand and manages over the Ollama API
(pull, copy, create, delete, blobs) and lists beside the served ones.

The wiring (``llmkit.serving.local_models``) builds the object and hands it to
``create_app``, which keeps it on ``app.state.local_models``; None there means
model management is off (``--no-model-management``, or an engine that does not
serve the catalog). The API types against this protocol and never imports the
wiring, which sits above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from llmkit.core.types import EngineInfo
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.env import ModelsSettings
from llmkit.models.catalog import Catalog, CatalogEntry
from llmkit.models.derived import Blobs


class LocalCatalog(Protocol):
    models: ModelsSettings  # where pulls go, from which hubs
    catalog: Catalog
    blobs: Blobs  # uploads for /api/create
    registry: ModelRegistry  # the served models, which catalog names must not shadow

    def serving(self, path: Path) -> ServedModel | None:
        """The served model whose weights are the file ``path``, if any."""
        ...

    def listed(self) -> list[tuple[str, EngineInfo, int]]:
        """(name, description, file time) of each servable catalog model not served yet."""
        ...

    async def forget(self, entry: CatalogEntry) -> None:
        """Stop serving what was built from ``entry`` (before its files go)."""
        ...
