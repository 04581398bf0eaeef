"""Quantizing a GGUF with llama.cpp's own quantizer, through the bindings
(``llama_model_quantize``), optionally guided by an importance matrix.

The quantizer runs in a child process (``python -m llmkit.models.quantize SRC DST
TYPE [--imatrix FILE]``): a C call cannot be interrupted from Python, and a child can
be killed on Ctrl-C or a client that left, and measured (peak RSS). ``quantize`` is
what the rest of llmkit calls; ``main`` is the child.

Importance matrices come in llama.cpp's two formats: the GGUF one ``llama-imatrix``
writes now (``<tensor>.in_sum2`` and ``<tensor>.counts`` per weight) and the legacy
``.dat`` one. Either becomes, per tensor, the mean squared activation of each input
column, which is what the quantizer weighs rounding errors by.
"""

from __future__ import annotations

import argparse
import ctypes
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from llmkit.errors import InvalidRequestError, ModelSpecError
from llmkit.models.watch import ChildRun, run_watched

#: The types ``--quantize`` takes: llama.cpp's ftype, and bits per weight (for the
#: size the output will have; the K-quants mix types, these are llama.cpp's figures).
QUANT_TYPES: dict[str, tuple[int, float]] = {
    "F16": (1, 16.0),
    "BF16": (32, 16.0),
    "Q8_0": (7, 8.5),
    "Q6_K": (18, 6.56),
    "Q5_K_M": (17, 5.69),
    "Q5_K_S": (16, 5.54),
    "Q5_0": (8, 5.5),
    "Q4_K_M": (15, 4.85),
    "Q4_K_S": (14, 4.58),
    "Q4_0": (2, 4.5),
    "Q3_K_M": (12, 3.91),
    "Q2_K": (10, 2.96),
}


def quant_type(name: str) -> str:
    """'q4_k_m' -> 'Q4_K_M'; an unknown name is refused with the valid ones."""
    key = name.strip().upper()
    if key not in QUANT_TYPES:
        raise InvalidRequestError(
            f"Unknown quantization type '{name}'; valid types: {', '.join(QUANT_TYPES)} "
            "(any case).",
            param="quantize",
        )
    return key


def quantized_bytes(n_params: int, qtype: str) -> int:
    return int(n_params * QUANT_TYPES[qtype][1] / 8)


def gguf_weights(path: Path) -> tuple[int, list[str]]:
    """(parameters, tensor names) of a GGUF, from its header."""
    from llmkit.models.gguf_header import read_gguf_header, tensor_totals

    header = read_gguf_header(path)
    return tensor_totals(header)[0], [name for name, _, _ in header.tensors]


def read_imatrix(path: Path) -> dict[str, list[float]]:
    """Per tensor name, the mean squared activation of each input column."""
    with path.open("rb") as f:
        gguf = f.read(4) == b"GGUF"
    try:
        return _imatrix_gguf(path) if gguf else _imatrix_legacy(path)
    except (ValueError, KeyError, struct.error, OSError) as e:
        raise ModelSpecError(f"{path} is not an importance matrix llama.cpp wrote: {e}") from None


def _imatrix_gguf(path: Path) -> dict[str, list[float]]:
    import numpy as np
    from gguf import GGUFReader

    tensors = {t.name: t for t in GGUFReader(path).tensors}
    out = {}
    for name, t in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name.removesuffix(".in_sum2")
        sums = np.asarray(t.data, dtype=np.float32)
        counts = np.asarray(tensors[base + ".counts"].data, dtype=np.float32).reshape(-1)
        sums = sums.reshape(len(counts), -1)  # one row per expert (one for a dense weight)
        # A column never seen (an expert no token reached) weighs all errors alike.
        safe = np.where(counts > 0, counts, 1.0)[:, None]
        means = np.where(counts[:, None] > 0, sums / safe, 1.0)
        out[base] = means.ravel().tolist()
    if not out:
        raise ValueError("no <tensor>.in_sum2 entries")
    return out


def _imatrix_legacy(path: Path) -> dict[str, list[float]]:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ValueError("truncated")
        vals = struct.unpack_from(fmt, data, pos)
        pos += size
        return vals

    (n,) = take("<i")
    if not 0 < n < 1_000_000:
        raise ValueError(f"{n} entries")
    out = {}
    for _ in range(n):
        (length,) = take("<i")
        name = data[pos : pos + length].decode()
        pos += length
        ncall, nval = take("<ii")
        values = list(take(f"<{nval}f"))
        # Stored as sum / count * calls: the mean is the value over the calls.
        out[name] = [v / ncall for v in values] if ncall > 0 else values
    return out


def quantize_file(src: Path, dst: Path, qtype: str, imatrix: Path | None, threads: int) -> None:
    """In this process: the bindings' quantizer, ``src`` (f16/f32 GGUF) to ``dst``."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[qtype][0]
    params.nthread = threads
    keep = []  # the arrays the C side points into, alive until it returns
    if imatrix is not None:
        import numpy as np

        wanted = read_imatrix(imatrix)
        _, names = gguf_weights(src)
        known = [n for n in wanted if n in set(names)]
        if not known:
            raise ModelSpecError(
                f"{imatrix} has no entry for any weight of {src.name}: it was made for "
                f"another model (it names {', '.join(list(wanted)[:3])}, ...)."
            )
        entries = (llama_cpp.llama_model_imatrix_data * (len(known) + 1))()
        for i, name in enumerate(known):
            arr = np.ascontiguousarray(wanted[name], dtype=np.float32)
            keep.append(arr)
            entries[i].name = name.encode()
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        entries[len(known)].name = None  # the list ends at a null name
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    code = llama_cpp.llama_model_quantize(
        str(src).encode(), str(dst).encode(), ctypes.byref(params)
    )
    if code != 0:
        raise ModelSpecError(f"llama.cpp's quantizer failed on {src.name} (code {code}).")


def quantize(
    src: Path,
    dst: Path,
    qtype: str,
    on_bytes: Callable[[int, int], None],
    *,
    imatrix: Path | None = None,
    threads: int = 0,
    cancelled: Callable[[], bool] = lambda: False,
) -> ChildRun:
    """Quantize ``src`` into ``dst`` in a child process, reporting bytes written."""
    n_params, _ = gguf_weights(src)
    cmd = [sys.executable, "-m", "llmkit.models.quantize", str(src), str(dst), qtype]
    cmd += ["--threads", str(threads)]
    if imatrix is not None:
        cmd += ["--imatrix", str(imatrix)]
    expected = quantized_bytes(n_params, qtype)
    return run_watched(
        cmd, dst, expected, on_bytes, what=f"quantizing to {qtype}", cancelled=cancelled
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmkit.models.quantize")
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("type")
    parser.add_argument("--imatrix", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        quantize_file(args.src, args.dst, quant_type(args.type), args.imatrix, args.threads)
    except (ModelSpecError, InvalidRequestError) as e:
        print(e.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
