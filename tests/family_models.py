"""The bundled weights dressed as another model family: a copy of the bundled
GGUF whose ``tokenizer.chat_template`` is a real family's template (from
llama.cpp's ``models/templates``, kept by ``scripts/bootstrap.sh`` in the
virtual environment's ``llama.cpp``), so the engines meet a reasoning model's
template, markers and switches on real decoding. The 135M model knows nothing
of thinking: tests assert what the engine does with the family's markers, never
what the model says."""

from __future__ import annotations

from collections.abc import Mapping
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


def with_template(
    src: str | Path, dst: Path, chat_template: str, extra: Mapping[str, str] | None = None
) -> Path:
    """A copy of the GGUF ``src`` at ``dst`` whose chat template is ``chat_template``:
    every other field and every tensor as they were; ``extra``: string fields
    added (a second template: ``tokenizer.chat_template.tool_use``)."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch, endianess=reader.endianess)
    for f in reader.fields.values():
        # The writer writes the architecture and the file's own GGUF.* fields itself.
        if f.name in (gguf.Keys.General.ARCHITECTURE, TEMPLATE_KEY) or f.name.startswith("GGUF."):
            continue
        kind = f.types[0]
        sub = f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(f.name, f.contents(), kind, sub_type=sub)
    writer.add_chat_template(chat_template)
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    for t in reader.tensors:
        writer.add_tensor_info(
            t.name, t.data.shape, t.data.dtype, t.data.nbytes, raw_dtype=t.tensor_type
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()
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
