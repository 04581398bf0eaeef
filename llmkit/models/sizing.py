"""Memory arithmetic, as pure functions over numbers.

Nothing here loads a model: callers pass what a config or GGUF header says.
"""

from __future__ import annotations

from collections.abc import Mapping

GIB = 1024**3


def kv_bytes_per_token(
    n_layers: int, n_kv_heads: int, head_dim: int, bytes_per_value: float = 2.0
) -> float:
    """Keys and values of one token across all layers (grouped-query attention
    stores only ``n_kv_heads`` heads)."""
    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_value


def gguf_kv_bytes_per_token(meta: Mapping[str, str], bytes_per_value: float = 2.0) -> float | None:
    """The same, from a GGUF's metadata (llama.cpp keeps K and V in f16 by default).
    None when the header lacks the attention shape (e.g. recurrent models)."""
    arch = meta.get("general.architecture")
    try:
        n_layers = int(meta[f"{arch}.block_count"])
        n_heads = int(meta[f"{arch}.attention.head_count"])
        n_kv = int(meta.get(f"{arch}.attention.head_count_kv", n_heads))
        head_dim = int(
            meta.get(f"{arch}.attention.key_length")
            or int(meta[f"{arch}.embedding_length"]) // n_heads
        )
    except (KeyError, ValueError, ZeroDivisionError):
        return None
    return kv_bytes_per_token(n_layers, n_kv, head_dim, bytes_per_value)


def default_context(
    trained: int,
    *,
    kv_per_token: float | None,
    sequences: int,
    ram_bytes: int,
    cap: int = 8192,
    floor: int = 2048,
    ram_share: float = 0.25,
) -> int:
    """The context to give each sequence when the user did not choose one: the
    model's own, at most ``cap``, halved while the KV cache of all sequences would
    take more than ``ram_share`` of memory (never below ``floor``)."""
    ctx = min(trained, cap)
    if kv_per_token:
        while ctx > floor and kv_per_token * ctx * sequences > ram_share * ram_bytes:
            ctx //= 2
    return max(min(ctx, trained), min(floor, trained))
