"""Wire models of Ollama's model-management routes (pull, delete, copy, create)
and the pure translation of llmkit's pull events into Ollama's progress objects.

Ollama's layers are the blobs of its registry, named by digest; llmkit's are a
repository's files. A file the hub keeps in LFS (the weights) comes with its
sha256, and is named by it as Ollama names a layer (``"pulling 8934d96d3f08"``,
``digest: "sha256:8934..."``) and verified once downloaded; a small file without
one (``README.md``) is named by its path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmkit.models.download import PullEvent
from llmkit.models.hubs import RemoteFile


class ManageRequest(BaseModel):
    """``model``, or ``name`` as older clients send it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str | None = None
    name: str | None = None

    @property
    def wanted(self) -> str:
        return self.model or self.name or ""


class PullBody(ManageRequest):
    insecure: bool | None = None
    stream: bool | None = True


class CopyBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    source: str
    destination: str


class CreateBody(ManageRequest):
    """The parts of a Modelfile, as Ollama's current ``/api/create`` takes them."""

    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    quantize: str | None = None
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    stream: bool | None = True


class Progress(BaseModel):
    """One line of a pull or create stream; unset fields are left out."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class PullLines:
    """llmkit's pull events as Ollama's progress lines: ``pulling manifest`` once,
    then one line per file as its bytes arrive (at most one per percent), and the
    closing lines once the pull is done."""

    def __init__(self) -> None:
        self._manifest = False
        self._sent: dict[str, int] = {}
        self.files: tuple[RemoteFile, ...] = ()  # the plan of the source that delivered

    def _named(self, path: str) -> tuple[str, str]:
        """(status, digest) of the layer that is the file ``path``."""
        sha = next((f.sha256 for f in self.files if f.path == path and f.sha256), None)
        return (f"pulling {sha[:12]}", f"sha256:{sha}") if sha else (f"pulling {path}", path)

    def of(self, event: PullEvent) -> list[Progress]:
        if event.status == "trying" and not self._manifest:
            self._manifest = True
            return [Progress(status="pulling manifest")]
        if event.status == "files":
            self.files = event.files
            return [
                Progress(status=status, digest=digest, total=f.size, completed=0)
                for f in event.files
                for status, digest in [self._named(f.path)]
            ]
        if event.status == "downloading" and event.file is not None:
            step = max(1, (event.total or 0) // 100)
            last = self._sent.get(event.file, -step)
            if event.completed - last < step and event.completed != event.total:
                return []
            self._sent[event.file] = event.completed
            status, digest = self._named(event.file)
            return [
                Progress(
                    status=status,
                    digest=digest,
                    total=event.total,
                    completed=event.completed,
                )
            ]
        return []

    @staticmethod
    def closing() -> list[Progress]:
        return [Progress(status="writing manifest"), Progress(status="success")]
