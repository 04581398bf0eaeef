"""The llama.cpp engine's line in ``llmkit doctor`` (``SPEC.doctor``): the installed
build's version and CPU features, whether llama.cpp's AMX kernels are on (they
crash: llama.cpp #20824) and whether llmkit's attention and Q4_1 column kernels
are in it (``build_info`` finds out)."""

from __future__ import annotations

from llmkit.engines.llamacpp.build_info import BuildInfo, build_info
from llmkit.engines.spec import Check


def build_checks() -> list[Check]:
    try:
        info = build_info()
    except ImportError as e:
        return [
            Check(
                "fail",
                "llama.cpp",
                f"llama-cpp-python is not installed ({e})",
                "install llmkit's dependencies: scripts/bootstrap.sh builds it for this CPU",
            )
        ]
    return [judge_build(info)]


def judge_build(info: BuildInfo) -> Check:
    """The installed build's line: its features, and AMX kernels off or not."""
    shown = f"llama-cpp-python {info.version}; CPU features: {', '.join(info.features) or '?'}"
    if info.amx:
        return Check(
            "fail",
            "llama.cpp",
            f"{shown}; AMX kernels ON ({', '.join(info.amx)})",
            "llama.cpp's AMX kernels crash (llama.cpp #20824): rebuild it without them, "
            "CMAKE_ARGS=\"-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' "
            "-DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'\" pip install "
            f"--force-reinstall --no-binary llama-cpp-python llama-cpp-python=={info.version} "
            "(scripts/bootstrap.sh does this)",
        )
    if not info.packed_attention:
        return Check(
            "warn",
            "llama.cpp",
            f"{shown}; AMX kernels off; without llmkit's attention kernel",
            "its KV pool falls back to 8-bit cells (slower prompts, and attention that "
            "costs what the whole pool holds): scripts/bootstrap.sh builds llama.cpp "
            "with the kernel",
        )
    if not info.column_matmul:
        return Check(
            "warn",
            "llama.cpp",
            f"{shown}; AMX kernels off; llmkit's attention kernel; without its Q4_1 column kernel",
            "a speculative step's drafts cost more to verify on Q4_1 weights: "
            "scripts/bootstrap.sh builds llama.cpp with the kernel",
        )
    return Check(
        "ok",
        "llama.cpp",
        f"{shown}; AMX kernels off; llmkit's attention and Q4_1 column kernels",
    )
