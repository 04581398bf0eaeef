"""What the installed llama.cpp was built with, for ``llmkit doctor``: the
llama-cpp-python version and the CPU features its kernels use.

llmkit builds llama.cpp without its AMX kernels (``-mno-amx-tile -mno-amx-int8
-mno-amx-bf16``, scripts/bootstrap.sh): they crash on Sapphire Rapids
(llama.cpp #20824). A wheel built elsewhere may have them on; llama.cpp's own
system info says so (``AMX_INT8 = 1``).

It also patches llama.cpp's CPU attention (scripts/llama-cpp/): the kernel reads
only the cells a sequence can see in the shared KV pool, and gives the same
numbers wherever they sit. A build without it (plain ``pip install``) still
serves, on 8-bit KV cells, which keep batched replies equal to lone ones. The
patch keeps ggml's stock kernels reachable: ``stock_attention`` switches to them
for a while, in this process, so tests and ``bench/kernel.py`` hold the kernel
against them in the same build.

A second patch reads each Q4_1 weight block once for up to four rows of a step
(the few rows a speculative step verifies), with each row's result the float
ggml's one-row dot product gives; ``stock_matmul`` switches back to ggml's loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_FEATURE = re.compile(r"([A-Z][A-Z0-9_]*) = 1")


@dataclass(frozen=True)
class BuildInfo:
    version: str
    system_info: str  # llama.cpp's own line: "CPU : SSE3 = 1 | AVX = 1 | ..."
    packed_attention: bool = True  # llmkit's attention patch is in the build
    column_matmul: bool = True  # and its Q4_1 column kernel

    @property
    def features(self) -> list[str]:
        return features(self.system_info)

    @property
    def amx(self) -> list[str]:
        return [f for f in self.features if f.startswith("AMX")]


def features(system_info: str) -> list[str]:
    """The features switched on in llama.cpp's system info, in its order."""
    return list(dict.fromkeys(_FEATURE.findall(system_info)))


def build_info() -> BuildInfo:
    """The installed build (ImportError when llama-cpp-python is missing)."""
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return BuildInfo(
        version=llama_cpp.__version__,
        system_info=text.strip(),
        packed_attention=packed_attention(),
        column_matmul=column_matmul(),
    )


@functools.cache
def packed_attention() -> bool:
    """Whether the installed llama.cpp has llmkit's attention kernel (the patch
    exports ``ggml_cpu_llmkit_packed_attention``)."""
    return _ggml_cpu() is not None


@functools.cache
def _ggml_cpu() -> ctypes.CDLL | None:
    """The ggml CPU library llama.cpp runs, when it carries the patch. The wheel
    holds copies, not links (libggml-cpu.so, .so.0, ...): opening another copy
    would map a second library whose switch no kernel reads, so the copy already
    loaded (through libggml's dependency) comes first."""
    try:
        import llama_cpp
    except ImportError:
        return None
    paths = sorted((Path(llama_cpp.__file__).parent / "lib").glob("*ggml-cpu*"))
    loaded = getattr(os, "RTLD_NOLOAD", None)  # open only what is in the process already
    for mode in ([loaded] if loaded is not None else []) + [ctypes.DEFAULT_MODE]:
        for path in paths:
            try:
                cdll = ctypes.CDLL(str(path), mode=mode)
            except OSError:
                continue
            if hasattr(cdll, "ggml_cpu_llmkit_packed_attention"):
                return cdll
    return None


def column_matmul() -> bool:
    """Whether the installed llama.cpp carries llmkit's Q4_1 column patch (its
    kernel runs where the CPU has AVX2: ``column_matmul_on``)."""
    cdll = _ggml_cpu()
    return cdll is not None and hasattr(cdll, "ggml_cpu_llmkit_column_matmul")


def packed_attention_on() -> bool:
    """Whether flash attention runs on llmkit's kernel now (False: ggml's stock
    kernels, as in a build without the patch, or switched by ``stock_attention``)."""
    cdll = _ggml_cpu()
    if cdll is None:
        return False
    # a build of the patch from before the switch: always on
    return not hasattr(cdll, "ggml_cpu_llmkit_packed_attention_on") or bool(
        cdll.ggml_cpu_llmkit_packed_attention_on()
    )


def stock_attention() -> contextlib.AbstractContextManager[None]:
    """Run flash attention on ggml's stock CPU kernels inside the block, in this
    process: the reference the kernel is held to. Enter it only between decodes
    (every thread of an op reads the switch for itself)."""
    return _switched_off("packed_attention", "attention kernel")


def column_matmul_on() -> bool:
    """Whether Q4_1 matrix products read each weight block once for up to four
    rows now (False: ggml's stock loop, a build without the patch, or switched by
    ``stock_matmul``)."""
    cdll = _ggml_cpu()  # the patch's own answer counts the CPU in
    return column_matmul() and bool(cdll.ggml_cpu_llmkit_column_matmul_on())


def stock_matmul() -> contextlib.AbstractContextManager[None]:
    """Run Q4_1 matrix products on ggml's stock loop inside the block, in this
    process: the reference the column kernel is held to. Enter it only between
    decodes."""
    return _switched_off("column_matmul", "column kernel")


@contextlib.contextmanager
def _switched_off(switch: str, what: str) -> Iterator[None]:
    """The patch's ``switch`` (``ggml_cpu_llmkit_set_<switch>``) off inside the
    block, back to what it was after."""
    cdll = _ggml_cpu()
    if cdll is None or not hasattr(cdll, f"ggml_cpu_llmkit_set_{switch}"):
        raise RuntimeError(
            f"this llama.cpp build has no switchable llmkit {what}; "
            "rebuild it with scripts/bootstrap.sh"
        )
    turn = getattr(cdll, f"ggml_cpu_llmkit_set_{switch}")
    was = getattr(cdll, f"ggml_cpu_llmkit_{switch}_on")()
    turn(0)
    try:
        yield
    finally:
        turn(was)
