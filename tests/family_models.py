"""The bundled weights dressed as another model family: a copy of the bundled
GGUF whose ``tokenizer.chat_template`` is a real family's template (from
llama.cpp's ``models/templates``, kept by ``scripts/bootstrap.sh`` in the
virtual environment's ``llama.cpp``), so the engines meet a reasoning model's
template, markers and switches on real decoding. The 135M model knows nothing
of thinking: tests assert what the engine does with the family's markers, never
what the model says."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import gguf

TEMPLATE_KEY = gguf.Keys.Tokenizer.CHAT_TEMPLATE


def llama_cpp_dir() -> Path:
    """llama.cpp's reference data, in the virtual environment running the tests."""
    from tests.llama_chat_cases import llama_cpp_dir as found

    return found()


def template(name: str) -> str:
    """One of llama.cpp's chat templates, by file name without ``.jinja``."""
    return (llama_cpp_dir() / "models" / "templates" / f"{name}.jinja").read_text()


@cache
def _layout(src: str) -> tuple[bytes, list[tuple[str, int, int]], tuple[int, int], int, int]:
    """Where the parts of the GGUF ``src`` lie: its 24-byte header, each key/value
    field (name, offset, size), the tensor infos (offset, end), the alignment and
    the offset of the tensor data. Read once per file (the vocabulary's arrays make
    a read take seconds)."""
    reader = gguf.GGUFReader(src)
    assert reader.endianess == gguf.GGUFEndian.LITTLE, "a little-endian GGUF is expected"
    fields = [
        (f.name, f.offset, sum(int(p.nbytes) for p in f.parts))
        for f in reader.fields.values()
        if not f.name.startswith("GGUF.")
    ]
    first, last = reader.tensors[0].field, reader.tensors[-1].field
    infos = (first.offset, last.offset + sum(int(p.nbytes) for p in last.parts))
    head = bytes(reader.data[:24])
    return head, fields, infos, int(reader.alignment), int(reader.data_offset)


def _string_field(key: str, value: str) -> bytes:
    """A GGUF key/value of type string: the key, the type (8), the value."""
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(v)) + v


def with_template(
    src: str | Path, dst: Path, chat_template: str, extra: Mapping[str, str] | None = None
) -> Path:
    """A copy of the GGUF ``src`` at ``dst`` whose chat template is ``chat_template``:
    every other field and every tensor as they were; ``extra``: string fields
    added (a second template: ``tokenizer.chat_template.tool_use``).

    Spliced byte for byte: the original's fields but the template, the new string
    fields, its tensor infos (their offsets are relative to the data, so they hold),
    padding to the alignment, then its tensor data copied whole. Rewriting the
    fields one by one through ``gguf``'s writer takes seconds a copy."""
    head, fields, (ti_start, ti_end), align, data_at = _layout(str(src))
    added = {TEMPLATE_KEY: chat_template, **(extra or {})}
    kept = [(o, n) for name, o, n in fields if name not in added]
    magic_version, n_tensors, _ = head[:8], head[8:16], head[16:24]
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(magic_version + n_tensors + struct.pack("<Q", len(kept) + len(added)))
        for offset, size in kept:
            f.seek(offset)
            out.write(f.read(size))
        for key, value in added.items():
            out.write(_string_field(key, value))
        f.seek(ti_start)
        out.write(f.read(ti_end - ti_start))
        out.write(bytes(-out.tell() % align))
        f.seek(data_at)
        shutil.copyfileobj(f, out, 16 << 20)
    return dst


class FamilyModels:
    """Copies of the bundled GGUF, one per template, made once in ``folder``."""

    def __init__(self, bundled: str, folder: Path) -> None:
        self.bundled = bundled
        self.folder = folder

    def path(self, name: str) -> str:
        """The bundled model with llama.cpp's template ``name``."""
        dst = self.folder / f"{name}.gguf"
        if not dst.exists():
            part = dst.with_suffix(".part")
            with_template(self.bundled, part, template(name))
            part.rename(dst)
        return str(dst)
