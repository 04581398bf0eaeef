"""The header of a GGUF file, read without loading the model: its key/values and
its tensors' names, shapes and types, with gguf's own type tables (``gguf`` is
llama.cpp's Python package).

``gguf.GGUFReader`` would do it too, but builds a numpy view of every vocabulary
string: seconds for SmolLM2's 49k tokens, paid on every ``list`` and ``serve``.
This walk skips over string arrays and takes milliseconds; tests/test_sizing.py
checks it against ``GGUFReader``.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import ModelSpecError

#: ``name-00001-of-00003.gguf``: llama.cpp loads the first shard and finds the rest.
SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def is_gguf(path: Path) -> bool:
    """A .gguf file, or a file that starts as one does: Ollama keeps its GGUFs as
    ``blobs/sha256-<hex>``, with no suffix."""
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def gguf_shards(path: Path) -> list[Path]:
    """All files of a (possibly split) GGUF, given its first."""
    m = SHARD_RE.search(path.name)
    if not m:
        return [path]
    count = int(m.group(2))
    stem = path.name[: m.start()]
    return [path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF's key/values (string arrays reduced to their length) and tensors."""

    fields: dict[str, Any]
    tensors: list[tuple[str, tuple[int, ...], int]]  # name, shape, ggml type


class TruncatedHeader(Exception):
    """The bytes given end before the header does: read more of the file."""


def read_gguf_header(path: Path) -> GGUFHeader:
    """The header of a GGUF file on disk (memory-mapped: only its pages are read)."""
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return parse_gguf_header(mm)
    except (OSError, ValueError, TruncatedHeader) as e:
        raise ModelSpecError(f"{path} is not a readable GGUF file: {e or 'truncated'}") from None


def parse_gguf_header(buf: Any) -> GGUFHeader:
    """Walk a GGUF header in ``buf`` (bytes, or an mmap of the file) with gguf's own
    type tables, skipping over the contents of string arrays. ``gguf.GGUFReader``
    builds a numpy view of every vocabulary string: seconds for SmolLM2's 49k
    tokens, paid on every ``list`` and ``serve``; this takes milliseconds and agrees
    with it (tests/test_sizing.py checks).

    ``buf`` may be a prefix of the file, as a ranged read of a remote GGUF gives:
    ``TruncatedHeader`` says it ended too soon (fetch more and call again);
    ``ValueError`` that it is no GGUF at all."""
    import gguf

    scalar = {
        gguf.GGUFValueType.UINT8: "<B", gguf.GGUFValueType.INT8: "<b",
        gguf.GGUFValueType.UINT16: "<H", gguf.GGUFValueType.INT16: "<h",
        gguf.GGUFValueType.UINT32: "<I", gguf.GGUFValueType.INT32: "<i",
        gguf.GGUFValueType.FLOAT32: "<f", gguf.GGUFValueType.BOOL: "<?",
        gguf.GGUFValueType.UINT64: "<Q", gguf.GGUFValueType.INT64: "<q",
        gguf.GGUFValueType.FLOAT64: "<d",
    }  # fmt: skip
    unpack_length = struct.Struct("<Q").unpack_from
    size = len(buf)
    if size < 4:
        raise TruncatedHeader(f"{size} bytes")
    if buf[:4] != b"GGUF":
        raise ValueError("no GGUF magic number")
    pos = 8  # magic, version

    def take(fmt: str) -> Any:
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > size:
            raise TruncatedHeader(f"the header goes past byte {size}")
        (v,) = struct.unpack_from(fmt, buf, pos)
        pos += n
        return v

    def skip(n: int) -> None:
        nonlocal pos
        if pos + n > size:
            raise TruncatedHeader(f"the header goes past byte {size}")
        pos += n

    def string() -> str:
        n = take("<Q")
        skip(n)
        return bytes(buf[pos - n : pos]).decode("utf-8", errors="replace")

    def value(vtype: int) -> Any:
        if vtype == gguf.GGUFValueType.STRING:
            return string()
        if vtype != gguf.GGUFValueType.ARRAY:
            try:
                return take(scalar[gguf.GGUFValueType(vtype)])
            except KeyError:
                raise ValueError(f"unknown value type {vtype}") from None
        sub, count = take("<I"), take("<Q")
        # A vocabulary's arrays hold tens of thousands of items: walked in one tight
        # loop (strings) or unpacked in one call (numbers), not an item at a time.
        if sub == gguf.GGUFValueType.STRING:
            nonlocal pos
            at = pos
            for _ in range(count):
                if at + 8 > size:
                    raise TruncatedHeader(f"the header goes past byte {size}")
                at += 8 + unpack_length(buf, at)[0]
            if at > size:
                raise TruncatedHeader(f"the header goes past byte {size}")
            pos = at
            return count
        fmt = scalar.get(sub) if count else None
        if fmt is None:
            return [value(sub) for _ in range(count)]
        items = struct.Struct(f"<{count}{fmt[1:]}")
        if pos + items.size > size:
            raise TruncatedHeader(f"the header goes past byte {size}")
        out = list(items.unpack_from(buf, pos))
        pos += items.size
        return out

    n_tensors, n_kv = take("<Q"), take("<Q")
    fields = {}
    for _ in range(n_kv):
        key = string()
        fields[key] = value(take("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = string()
        shape = tuple(take("<Q") for _ in range(take("<I")))
        tensors.append((name, shape, take("<I")))
        take("<Q")  # data offset
    return GGUFHeader(fields, tensors)


def tensor_totals(header: GGUFHeader) -> tuple[int, int]:
    """(parameters, bytes as stored) of a header's tensors."""
    import gguf

    n_params = n_bytes = 0
    for _, shape, ggml_type in header.tensors:
        count = math.prod(shape)
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
        n_params += count
        n_bytes += count // block * size
    return n_params, n_bytes
