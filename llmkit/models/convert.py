"""Making a GGUF model from a safetensors directory (a pulled repository, a local
fine-tune): llama.cpp's own converter, then its quantizer, into the catalog.

The converter is ``convert_hf_to_gguf.py`` from the llama.cpp source pinned with the
bindings, kept at ``<venv>/llama.cpp/`` (``scripts/bootstrap.sh`` puts it there); it
runs in a child process under this Python, and needs torch (the ``transformers``
extra). Which architectures it converts is read from its own registry
(``conversion/__init__.py``'s ``TEXT_MODEL_MAP``) without importing it.

Nothing half-made ever shows in the catalog: the work happens in a hidden directory
beside the catalog's models (same file system, so the result is linked, not copied),
the model's manifest is written last by ``derived.create``, and the directory is
removed whatever happens (an error, a killed converter, Ctrl-C).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
import shutil
import struct
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmkit.errors import ConfigError, DiskFullError, InsufficientMemoryError, ModelSpecError
from llmkit.models import derived
from llmkit.models.catalog import Catalog, CatalogEntry
from llmkit.models.fit import machine_budget
from llmkit.models.gguf_header import is_gguf
from llmkit.models.llama_source import llama_cpp_dir
from llmkit.models.metadata import read_gguf
from llmkit.models.modelfile import Modelfile
from llmkit.models.quantize import (
    QUANT_TYPES,
    gguf_weights,
    quant_type,
    quantize,
    quantized_bytes,
)
from llmkit.models.sizing import GIB, format_bytes
from llmkit.models.watch import ChildRun, run_watched

#: What the converter's Python holds besides the tensors (torch, the tokenizer): measured
#: with bench/convert.py on a 135M-shaped model, rounded up.
CONVERTER_RUNTIME_BYTES = GIB // 2
#: Bytes per value of the types a safetensors file may hold.
_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1}


@dataclass(frozen=True)
class CreateEvent:
    """One step of making a model: ``stage`` is "converting", "quantizing" (with
    ``completed`` of ``total`` bytes written), "writing" or "success"."""

    stage: str
    completed: int = 0
    total: int = 0
    message: str = ""


@dataclass(frozen=True)
class SourceModel:
    directory: Path
    architectures: tuple[str, ...]
    n_params: int
    f16_bytes: int  # the converted GGUF's size: 2-D weights in f16, the rest in f32
    largest_tensor: int  # elements, of the largest weight (the converter holds it in f32)


@dataclass(frozen=True)
class CreateStats:
    """What making the model cost (for bench/convert.py)."""

    convert: ChildRun | None
    quantize: ChildRun | None


def supported_architectures(source: Path | None = None) -> list[str]:
    """The ``architectures`` names the converter registers, read from its source."""
    registry = (source or llama_cpp_dir()) / "conversion" / "__init__.py"
    try:
        tree = ast.parse(registry.read_text())
    except OSError:
        raise ConfigError(_no_converter(source or llama_cpp_dir())) from None
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "TEXT_MODEL_MAP":
            return sorted(ast.literal_eval(node.value))
    raise ConfigError(
        f"{registry} has no TEXT_MODEL_MAP: not the llama.cpp converter llmkit knows."
    )


def _no_converter(where: Path) -> str:
    return (
        f"llama.cpp's converter is not at {where}/convert_hf_to_gguf.py; "
        "scripts/bootstrap.sh puts it there (the llama.cpp source the bindings are built from)."
    )


def inspect_source(directory: Path) -> SourceModel:
    """What a safetensors directory holds, from config.json and the files' headers."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        raise ModelSpecError(
            f"{directory} has no readable config.json: a model to convert is a Hugging Face "
            "model directory (config.json, *.safetensors, tokenizer files)."
        ) from None
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelSpecError(f"{directory} holds no .safetensors file to convert.")
    n_params = f16 = largest = 0
    for f in files:
        try:
            with f.open("rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(length))
        except (OSError, ValueError, struct.error):
            raise ModelSpecError(
                f"{f} is not a safetensors file (its header cannot be read)."
            ) from None
        for name, t in header.items():
            if name == "__metadata__":
                continue
            count = math.prod(t["shape"])
            n_params += count
            f16 += count * (2 if len(t["shape"]) >= 2 else 4)
            largest = max(largest, count)
    archs = tuple(a for a in config.get("architectures") or () if isinstance(a, str))
    # The vocabulary and its merges go in the GGUF's metadata too (~40 bytes a token).
    f16 += int(config.get("vocab_size") or 0) * 40
    return SourceModel(directory, archs, n_params, f16, largest)


def check_supported(src: SourceModel, supported: list[str]) -> None:
    if not any(a in supported for a in src.architectures):
        found = ", ".join(src.architectures) or "none"
        raise ModelSpecError(
            f"{src.directory} is a model llama.cpp's converter cannot convert: config.json's "
            f"architectures: {found}. Supported: {', '.join(supported)}."
        )


def _need_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(
            "Converting safetensors needs torch, which llama.cpp's converter imports: "
            "pip install 'llmkit[transformers]'."
        )


def check_room(
    where: Path, disk_bytes: int, ram_bytes: int, *, memory_gib: float | None = None
) -> None:
    """Refuse, with the numbers, work whose output would not fit ``where``'s disk or
    whose working set would not fit this machine's RAM."""
    free = shutil.disk_usage(where).free
    if disk_bytes > free:
        raise DiskFullError(
            f"Not enough disk in {where}: converting needs {format_bytes(disk_bytes)} "
            f"(the f16 GGUF and the quantized one), {format_bytes(free)} is free."
        )
    budget = machine_budget(gpu=False, memory_gib=memory_gib)
    if ram_bytes > budget.bytes:
        raise InsufficientMemoryError(
            f"Not enough memory: converting needs about {format_bytes(ram_bytes)} of RAM, "
            f"{format_bytes(budget.bytes)} is the {budget.source}."
        )


def room_needed(f16_bytes: int, largest: int, n_params: int, qtype: str) -> tuple[int, int]:
    """(disk, RAM) bytes making a ``qtype`` model takes: the F16 GGUF and the quantized
    one on disk at once; in RAM, the converter's working set (a tensor or two in f32,
    ``largest`` elements, beside torch), and the result, which must fit to be served."""
    out = 0 if qtype in ("F16", "BF16") else quantized_bytes(n_params, qtype)
    ram = max(largest * 4 * 2 + CONVERTER_RUNTIME_BYTES, out or f16_bytes)
    return f16_bytes + out, ram


def check_before_pull(
    where: Path, n_params: int, download: int, qtype: str, *, memory_gib: float | None = None
) -> None:
    """``pull --quantize``'s check before any weight is fetched: room for the download
    and for making the model, estimated from the parameter count (config.json)."""
    # Without the tensors' shapes, take the largest to be a tenth of the model (the
    # embeddings of a small model; far less in a large one).
    disk, ram = room_needed(n_params * 2, n_params // 10, n_params, qtype)
    check_room(where, disk + download, ram, memory_gib=memory_gib)


def _file_stem(name: str) -> str:
    base, _ = derived.split_name(name)
    return re.sub(r"[^A-Za-z0-9._-]", "-", base.rsplit("/", 1)[-1])


def make_model(
    catalog: Catalog,
    name: str,
    source: Path,
    quant: str | None,
    emit: Callable[[CreateEvent], None] = lambda e: None,
    *,
    imatrix: Path | None = None,
    modelfile: Modelfile | None = None,
    check_fit: bool = True,
    memory_gib: float | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[CatalogEntry, CreateStats]:
    """Make ``name`` in ``catalog`` from ``source``: a safetensors directory (converted,
    then quantized to ``quant`` unless it is F16/BF16) or a GGUF file (quantized)."""
    qtype = quant_type(quant) if quant else "F16"
    derived.check_name(catalog, name)
    if imatrix is not None and not imatrix.is_file():
        raise ModelSpecError(f"No importance matrix at {imatrix}.")
    from_gguf = source.is_file() and is_gguf(source)
    if from_gguf:
        if qtype in ("F16", "BF16"):
            raise ModelSpecError(f"{source.name} is a GGUF already; name a type to quantize it to.")
        stored = read_gguf(source).quantization or "F16"
        if stored.upper() not in ("F32", "F16", "BF16", "ALL_F32", "MOSTLY_F16", "MOSTLY_BF16"):
            # As Ollama: requantizing loses twice; start from the unquantized weights.
            raise ModelSpecError(
                f"{source.name} is quantized already ({stored}); quantization starts from "
                "an F32, F16 or BF16 GGUF, or from the safetensors."
            )
        n_params = gguf_weights(source)[0]
        disk, ram = quantized_bytes(n_params, qtype), quantized_bytes(n_params, qtype)
    else:
        if not source.is_dir():
            raise ModelSpecError(f"{source} is neither a model directory nor a .gguf file.")
        llama_cpp = llama_cpp_dir()
        src = inspect_source(source)
        check_supported(src, supported_architectures(llama_cpp))
        _need_torch()
        disk, ram = room_needed(src.f16_bytes, src.largest_tensor, src.n_params, qtype)
    if check_fit:
        catalog.models_dir.mkdir(parents=True, exist_ok=True)
        check_room(catalog.models_dir, disk, ram, memory_gib=memory_gib)
    catalog.models_dir.mkdir(parents=True, exist_ok=True)
    work = catalog.models_dir / f".creating-{uuid.uuid4().hex[:12]}"
    work.mkdir()
    conv = quant_run = None
    try:
        final = work / f"{_file_stem(name)}-{qtype}.gguf"
        if from_gguf:
            f16 = source
        else:
            f16 = final if qtype in ("F16", "BF16") else work / "converted-f16.gguf"
            conv = convert(src, f16, emit, outtype=qtype.lower() if qtype == "BF16" else "f16",
                           cancelled=cancelled)  # fmt: skip
        if f16 != final:

            def on_q(done: int, total: int) -> None:
                emit(CreateEvent("quantizing", done, total, f"quantizing F16 model to {qtype}"))

            quant_run = quantize(f16, final, qtype, on_q, imatrix=imatrix, cancelled=cancelled)
        emit(CreateEvent("writing"))
        entry = derived.create(catalog, name, final, modelfile, final.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(CreateEvent("success"))
    return entry, CreateStats(conv, quant_run)


def convert(
    src: SourceModel,
    out: Path,
    emit: Callable[[CreateEvent], None],
    *,
    outtype: str = "f16",
    cancelled: Callable[[], bool] = lambda: False,
) -> ChildRun:
    """llama.cpp's converter on ``src``, writing ``out``."""
    script = llama_cpp_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise ConfigError(_no_converter(llama_cpp_dir()))
    cmd = [sys.executable, str(script), str(src.directory), "--outfile", str(out)]
    cmd += ["--outtype", outtype]

    def on_bytes(done: int, total: int) -> None:
        emit(CreateEvent("converting", done, total, "converting model"))

    # It imports its own gguf-py, beside it: the one it is written against.
    what = "llama.cpp's converter"
    return run_watched(cmd, out, src.f16_bytes, on_bytes, what=what, cancelled=cancelled)


__all__ = ["QUANT_TYPES", "CreateEvent", "make_model", "supported_architectures"]
