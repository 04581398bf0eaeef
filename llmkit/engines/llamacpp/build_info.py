"""What the installed llama.cpp was built with, for ``llmkit doctor``: the
llama-cpp-python version and the CPU features its kernels use.

llmkit builds llama.cpp without its AMX kernels (``-mno-amx-tile -mno-amx-int8
-mno-amx-bf16``, scripts/bootstrap.sh): they crash on Sapphire Rapids
(llama.cpp #20824). A wheel built elsewhere may have them on; llama.cpp's own
system info says so (``AMX_INT8 = 1``).

It also patches llama.cpp's CPU attention (scripts/llama-cpp/): the kernel reads
only the cells a sequence can see in the shared KV pool, and gives the same
numbers wherever they sit. A build without it (plain ``pip install``) still
serves, on 8-bit KV cells, which keep batched replies equal to lone ones.
"""

from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass
from pathlib import Path

_FEATURE = re.compile(r"([A-Z][A-Z0-9_]*) = 1")


@dataclass(frozen=True)
class BuildInfo:
    version: str
    system_info: str  # llama.cpp's own line: "CPU : SSE3 = 1 | AVX = 1 | ..."
    packed_attention: bool = True  # llmkit's attention patch is in the build

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
    )


@functools.cache
def packed_attention() -> bool:
    """Whether the installed llama.cpp has llmkit's attention kernel (the patch
    exports ``ggml_cpu_llmkit_packed_attention``)."""
    try:
        import llama_cpp
    except ImportError:
        return False
    lib = Path(llama_cpp.__file__).parent / "lib"
    for path in sorted(lib.glob("*ggml-cpu*")):
        try:
            if hasattr(ctypes.CDLL(str(path)), "ggml_cpu_llmkit_packed_attention"):
                return True
        except OSError:
            continue
    return False
