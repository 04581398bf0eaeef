"""Ollama's model-management routes, over llmkit's local catalog: ``pull`` (llmkit's
own pull, its progress as Ollama's lines), ``delete``, ``copy``, ``create`` (a GGUF
plus the parts of a Modelfile llmkit applies; safetensors converted and ``quantize``
quantized by ``manage_convert``) and ``blobs`` (uploads for
``create``). HTTP only: the catalog work is ``models/``' and the serving of what
they make is the wiring's (``api/local_catalog`` says what the routes need of it).

Behind the API key like every route; ``--no-model-management`` answers each of
them 403, in Ollama's shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from llmkit.api.local_catalog import LocalCatalog
from llmkit.api.ollama.errors import error_line
from llmkit.api.ollama.manage_convert import making, uploaded_blob, uploads_safetensors
from llmkit.api.ollama.manage_schemas import (
    CopyBody,
    CreateBody,
    ManageRequest,
    Progress,
    PullBody,
    PullLines,
)
from llmkit.api.ollama.routes import JsonBodyRoute
from llmkit.api.ollama.schemas import ErrorResponse, Options
from llmkit.api.streaming import ndjson
from llmkit.errors import (
    ForbiddenError,
    InvalidRequestError,
    LlmkitError,
    ModelSpecError,
    NotFoundError,
)
from llmkit.models import derived
from llmkit.models.catalog import CatalogEntry
from llmkit.models.download import PullEvent, pull
from llmkit.models.gguf_header import is_gguf
from llmkit.models.hf_names import to_pull_request
from llmkit.models.lora import check_adapter
from llmkit.models.modelfile import Modelfile
from llmkit.models.verify import verify

router = APIRouter(prefix="/api", route_class=JsonBodyRoute)


def _local(request: Request) -> LocalCatalog:
    local: LocalCatalog | None = request.app.state.local_models
    if local is not None:
        return local
    raise ForbiddenError(
        "Model management is turned off on this server (--no-model-management, or an "
        "engine that does not serve the local catalog): it serves only the models it "
        "was started with."
    )


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"model '{name}' not found")


def _line(p: Progress | ErrorResponse) -> str:
    return p.model_dump_json(exclude_none=True) + "\n"


def _lines(progress: AsyncIterator[Progress]) -> StreamingResponse:
    return ndjson(progress, frame=_line, error=lambda e: _line(error_line(e)))


async def _last(progress: AsyncIterator[Progress]) -> JSONResponse:
    lines = [line async for line in progress]
    return JSONResponse(lines[-1].model_dump(exclude_none=True))


@router.post("/pull", response_model=None)
async def pull_model(request: Request, body: PullBody) -> Response:
    local = _local(request)
    if not body.wanted:
        raise InvalidRequestError("model is required", param="model")
    progress = _pulling(local, body.wanted)
    return _lines(progress) if body.stream is not False else await _last(progress)


async def _pulling(local: LocalCatalog, name: str) -> AsyncIterator[Progress]:
    """llmkit's pull in a worker thread; its events become Ollama's lines as they come."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[PullEvent | None] = asyncio.Queue()

    def emit(event: PullEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    # fit=True: the largest quantisation that fits this machine, checked before any
    # byte moves (Ollama pulls first and fails out of memory later).
    job = asyncio.ensure_future(
        asyncio.to_thread(pull, to_pull_request(name), local.models, emit, fit=True)
    )
    job.add_done_callback(lambda _: queue.put_nowait(None))
    lines = PullLines()
    while (event := await queue.get()) is not None:
        for line in lines.of(event):
            yield line
    entries = job.result()  # the pull's own error, if it failed
    if any(f.sha256 for f in lines.files) and entries and entries[0].directory is not None:
        yield Progress(status="verifying sha256 digest")
        await asyncio.to_thread(verify, entries[0].directory, lines.files)
    for entry in entries:  # a model pulled again is built afresh on its next request
        await local.forget(entry)
    for line in lines.closing():
        yield line


@router.delete("/delete")
async def delete_model(request: Request, body: ManageRequest) -> Response:
    local = _local(request)
    name = body.wanted
    if not name:
        raise InvalidRequestError("model is required", param="model")
    entry = local.catalog.lookup(name)
    if entry is None:
        raise _not_found(name)
    served = local.serving(entry.path)
    if served is not None and not served.on_demand:
        raise InvalidRequestError(
            f"{name} is served from this server's configuration (--model, --config); "
            "it stays until the server is started without it."
        )
    if served is not None and served.active:
        raise InvalidRequestError(f"{name} is answering a request; delete it when it is done.")
    await local.forget(entry)
    await asyncio.to_thread(local.catalog.remove, entry)
    return Response(status_code=200)


@router.post("/copy")
async def copy_model(request: Request, body: CopyBody) -> Response:
    local = _local(request)
    gguf, made = _weights(request, local, body.source)
    await _make(local, body.destination, gguf, made)
    return Response(status_code=200)


@router.post("/create", response_model=None)
async def create_model(request: Request, body: CreateBody) -> Response:
    local = _local(request)
    name = body.wanted
    if not name:
        raise InvalidRequestError("model is required", param="model")
    _check_parameters(body.parameters or {})
    if uploads_safetensors(body):  # converted with llama.cpp's converter (manage_convert)
        gguf, made, filename = None, None, None
    else:
        gguf, made, filename = _base(request, local, body)
    adapters = _adapters(local, body.adapters or {}, gguf, body.from_ or filename or name)
    mine = Modelfile(
        system=body.system if body.system is not None else (made.system if made else None),
        template=body.template if body.template is not None else (made.template if made else None),
        parameters={**(made.parameters if made else {}), **(body.parameters or {})},
        messages=_messages(body.messages) if body.messages else (made.messages if made else ()),
        adapters=(*(made.adapters if made else ()), *adapters),
    )
    if gguf is None or body.quantize:
        progress = await making(local, body, name, gguf, mine)
        return _lines(progress) if body.stream is not False else await _last(progress)
    await _make(local, name, gguf, mine, filename)

    async def steps() -> AsyncIterator[Progress]:
        for status in ("parsing GGUF", "writing manifest", "success"):
            yield Progress(status=status)

    return _lines(steps()) if body.stream is not False else await _last(steps())


def _adapters(
    local: LocalCatalog, given: dict[str, str], gguf: Path | None, base: str
) -> tuple[str, ...]:
    """The LoRA adapters ``adapters`` names (file name -> uploaded blob, as Ollama's
    client sends them), each a GGUF adapter checked against the base now: one made
    for another model is refused here, with both names, not when it first loads."""
    if given and gguf is None:  # a base still to be converted: no shapes to check yet
        raise InvalidRequestError(
            "adapters apply to a GGUF base: create the model from its files first, then "
            "another from it with the adapters.",
            param="adapters",
        )
    out = []
    for filename, digest in given.items():
        path = uploaded_blob(local, digest, "adapters")
        if not is_gguf(path):
            raise InvalidRequestError(
                f"adapters: {filename} is not a GGUF LoRA adapter; convert a PEFT adapter "
                "with llama.cpp's convert_lora_to_gguf.py (or serve its directory with "
                "llmkit serve --lora DIR, which converts it).",
                param="adapters",
            )
        check_adapter(path, gguf, filename, base)
        out.append(str(path))
    return tuple(out)


def _check_parameters(given: dict) -> None:
    """Refuse now what would fail every request to the model later."""
    try:
        Options.model_validate(given)
    except ValidationError as e:
        where = ".".join(str(x) for x in e.errors()[0]["loc"])
        raise InvalidRequestError(
            f"parameters.{where}: {e.errors()[0]['msg']}", param="parameters"
        ) from None


def _messages(given: list[dict]) -> tuple:
    mf = Modelfile.from_manifest({"messages": given})
    return mf.messages if mf is not None else ()


def _base(
    request: Request, local: LocalCatalog, body: CreateBody
) -> tuple[Path, Modelfile | None, str | None]:
    """The GGUF a new model is made from: an uploaded blob (``files``), a GGUF on the
    server's disk or a model (``from``); with the Modelfile it already has."""
    if body.files:
        ggufs = {n: d for n, d in body.files.items() if n.lower().endswith(".gguf")}
        if len(ggufs) != 1:
            raise InvalidRequestError(
                "files must name one .gguf file (llmkit's create takes one GGUF).", param="files"
            )
        [(filename, digest)] = ggufs.items()
        path = uploaded_blob(local, digest, "files")
        if not is_gguf(path):
            raise InvalidRequestError(f"{filename} ({digest}) is not a GGUF file.")
        return path, None, Path(filename).name
    if not body.from_:
        raise InvalidRequestError("create needs 'from' (a model or a .gguf) or 'files'.")
    given = Path(body.from_).expanduser()
    if given.is_absolute() and given.suffix.lower() == ".gguf":
        if not given.is_file():
            raise ModelSpecError(f"No such file on the server: {given}")
        return given, None, None
    gguf, made = _weights(request, local, body.from_)
    return gguf, made, None


def _weights(request: Request, local: LocalCatalog, name: str) -> tuple[Path, Modelfile | None]:
    """The GGUF file a model name serves, and its Modelfile: a catalog model, or a
    configured one served from a GGUF."""
    entry = local.catalog.lookup(name)
    if entry is not None and entry.complete and entry.format == "gguf":
        return entry.path, entry.modelfile
    served = request.app.state.registry.find(name)
    if served is not None and Path(served.info.model).suffix.lower() == ".gguf":
        return Path(served.info.model), served.modelfile
    raise _not_found(name)


async def _make(
    local: LocalCatalog, name: str, gguf: Path, mf: Modelfile | None, filename: str | None = None
) -> CatalogEntry:
    taken = local.registry.find(name)
    if taken is not None and not taken.on_demand:
        raise InvalidRequestError(
            f"{name} is a name this server's configuration serves; choose another.",
            param="model",
        )
    old = local.catalog.lookup(derived.canonical(name))
    if old is not None:
        await local.forget(old)  # rebuilt, with what it is now, on its next request
    try:
        return await asyncio.to_thread(derived.create, local.catalog, name, gguf, mf, filename)
    except OSError as e:
        raise LlmkitError(f"Could not write {name}: {e.strerror or e}") from None


@router.head("/blobs/{digest}")
async def has_blob(request: Request, digest: str) -> Response:
    local = _local(request)
    if not local.blobs.has(digest):
        raise NotFoundError(f"blob {digest} not found")
    return Response(status_code=200)


@router.post("/blobs/{digest}")
async def upload_blob(request: Request, digest: str) -> Response:
    local = _local(request)
    local.blobs.path(digest)  # a malformed digest is refused before the body is read
    if not local.blobs.has(digest):
        await local.blobs.receive(digest, request.stream())
    return Response(status_code=201)
