"""Where llama.cpp's own tools are: the converters (``convert_hf_to_gguf.py``,
``convert_lora_to_gguf.py``, with their ``conversion`` package and ``gguf-py``)
from the pinned llama-cpp-python sdist, which scripts/bootstrap.sh keeps in the
virtual environment's ``llama.cpp`` beside the bindings built from the same
source."""

from __future__ import annotations

import sys
from pathlib import Path


def llama_cpp_dir() -> Path:
    return Path(sys.prefix) / "llama.cpp"
