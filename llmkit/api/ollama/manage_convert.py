"""``/api/create`` when the model must be made, not linked: safetensors uploaded as
blobs (``files``: config, tokenizer and weights by name, as the ``ollama`` client
sends a model directory) are converted with llama.cpp's converter, and ``quantize``
(Ollama's field) quantizes the result, or a GGUF. The work is ``models.convert``'s,
in a worker thread; its steps become Ollama's status lines ("converting model",
"quantizing F16 model to Q4_K_M", "creating new layer", "writing manifest",
"success").

Everything that can be refused (a missing blob, a path outside the upload, an
architecture the converter lacks, an unknown type, no room) is refused before the
first line, with the status code; a client that leaves stops the converter.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from llmkit.api.local_catalog import LocalCatalog
from llmkit.api.ollama.manage_schemas import CreateBody, Progress
from llmkit.errors import InvalidRequestError
from llmkit.models import derived
from llmkit.models.convert import CreateEvent, make_model
from llmkit.models.download import inside
from llmkit.models.modelfile import Modelfile


def uploads_safetensors(body: CreateBody) -> bool:
    return any(n.lower().endswith(".safetensors") for n in (body.files or {}))


def uploaded_blob(local: LocalCatalog, digest: str, param: str) -> Path:
    """The uploaded blob ``digest``; refused when it was never uploaded."""
    path = local.blobs.path(digest)
    if not path.is_file():
        raise InvalidRequestError(
            f"No blob {digest} on this server: upload it first (POST /api/blobs/{digest}).",
            param=param,
        )
    return path


def stage(local: LocalCatalog, files: dict[str, str]) -> Path:
    """The uploaded blobs as a model directory (hard links, named as uploaded)."""
    for filename, digest in files.items():
        if not inside(filename) or not filename:
            raise InvalidRequestError(f"'{filename}' is not a file name inside a model directory.")
        uploaded_blob(local, digest, "files")
    directory = local.catalog.models_dir / f".staging-{uuid.uuid4().hex[:12]}"
    for filename, digest in files.items():
        target = directory / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = local.blobs.path(digest)
        try:
            os.link(blob, target)
        except OSError:
            shutil.copyfile(blob, target)
    return directory


async def making(
    local: LocalCatalog, body: CreateBody, name: str, gguf: Path | None, mf: Modelfile | None
) -> AsyncIterator[Progress]:
    """Make ``name`` from the uploaded safetensors (``gguf`` None) or by quantizing
    ``gguf``; refuses before yielding anything, then yields Ollama's lines."""
    taken = local.registry.find(name)
    if taken is not None and not taken.on_demand:
        raise InvalidRequestError(
            f"{name} is a name this server's configuration serves; choose another.",
            param="model",
        )
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[CreateEvent | None] = asyncio.Queue()
    stop = threading.Event()

    def emit(event: CreateEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def work() -> object:
        staged = stage(local, body.files or {}) if gguf is None else None
        source = staged if staged is not None else gguf
        assert source is not None
        try:
            return make_model(
                local.catalog, name, source, body.quantize, emit, modelfile=mf,
                memory_gib=local.models.memory_gib, cancelled=stop.is_set,
            )  # fmt: skip
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)

    old = local.catalog.lookup(derived.canonical(name))
    if old is not None:
        await local.forget(old)  # rebuilt, with what it is now, on its next request
    job = asyncio.ensure_future(asyncio.to_thread(work))
    job.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, None))
    first = await queue.get()
    if first is None:
        job.result()  # refused before any work: the error, with its status code
    return _lines(first, queue, job, stop)


async def _lines(
    first: CreateEvent | None,
    queue: asyncio.Queue[CreateEvent | None],
    job: asyncio.Future,
    stop: threading.Event,
) -> AsyncIterator[Progress]:
    sent: dict[str, int] = {}
    event = first
    try:
        while event is not None:
            for line in _progress(event, sent):
                yield line
            event = await queue.get()
        job.result()  # a failure during the work: the stream's last line
    finally:
        stop.set()  # a client that left: the child is killed, the work dir removed


def _progress(e: CreateEvent, sent: dict[str, int]) -> list[Progress]:
    """Ollama's lines for one event; a stage's bytes at most once per percent."""
    if e.stage == "converting":
        if "converting" in sent:
            return []
        sent["converting"] = 0
        return [Progress(status="converting model")]
    if e.stage == "quantizing":
        step = max(1, e.total // 100)
        if e.completed - sent.get("quantizing", -step) < step and e.completed != e.total:
            return []
        sent["quantizing"] = e.completed
        return [Progress(status=e.message, total=e.total, completed=e.completed)]
    if e.stage == "writing":
        return [Progress(status="creating new layer"), Progress(status="writing manifest")]
    if e.stage == "success":
        return [Progress(status="success")]
    return []
