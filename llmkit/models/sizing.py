"""Memory arithmetic, as pure functions over numbers.

Nothing here loads a model or looks at the machine: callers pass what a config
or GGUF header says (``metadata.py``) and how it will be run, and get back a
typed estimate whose fields are the terms users add up themselves:
parameters × bytes per parameter, KV bytes per token × tokens, overhead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from llmkit.errors import ConfigError

GIB = 1024**3
MIB = 1024**2

#: Bytes one parameter takes at each ``--dtype``. int8/int4 count the weights
#: only: the per-group scales of GPTQ/AWQ-style formats add a few percent.
DTYPE_BYTES: dict[str, float] = {
    "float32": 4.0,
    "float16": 2.0,
    "bfloat16": 2.0,
    "int8": 1.0,
    "int4": 0.5,
}
DTYPE_ALIASES = {
    "fp32": "float32",
    "f32": "float32",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "q8": "int8",
    "q4": "int4",
}

#: Bits per weight of common GGUF quantisations as llama.cpp stores them
#: (blocks carry their scales), smallest last, for "a smaller quantisation" advice.
GGUF_BITS = {
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_K_M": 5.69,
    "Q4_K_M": 4.85,
    "Q3_K_M": 3.91,
    "Q2_K": 2.96,
}

#: Rows of one llama.cpp micro-batch (llmkit's n_ubatch).
LLAMACPP_UBATCH = 512
#: llama.cpp's tokenizer tables (token strings, merges, lookup maps) per vocabulary
#: entry: 33 MiB measured on SmolLM2's 49,152 tokens and 48,900 merges.
LLAMACPP_BYTES_PER_VOCAB_ENTRY = 700
#: CUDA context, non-torch allocations and CUDA graphs per GPU, as vLLM's start-up
#: profile reports them for 7B-70B models (0.5-1 GiB).
GPU_RUNTIME_BYTES = 3 * GIB // 4
#: Tokens vLLM processes in one step by default (max_num_batched_tokens).
GPU_BATCHED_TOKENS = 2048


def normalize_dtype(name: str) -> str:
    """'fp16' -> 'float16'; raises ValueError for a dtype sizing does not know."""
    key = name.strip().lower()
    key = DTYPE_ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype '{name}': use one of {', '.join(DTYPE_BYTES)}")
    return key


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


def serving_context(
    trained: int,
    asked: int | None,
    *,
    kv_per_token: float | None,
    sequences: int,
    ram_bytes: int,
) -> int:
    """The context each sequence is served with, decided once: the fit check counts
    the memory for it and the engine loads with it. ``asked`` (``--max-model-len``)
    as given, refused when longer than the model was ``trained`` for; else
    ``default_context``. ``kv_per_token`` None: the KV cache is not reserved up front
    (transformers grows it as a sequence does), so RAM does not shrink the default."""
    if asked is None:
        return default_context(
            trained, kv_per_token=kv_per_token, sequences=sequences, ram_bytes=ram_bytes
        )
    if asked > trained:
        raise ConfigError(
            f"--max-model-len {asked} is more than the {trained} tokens this model was "
            f"trained for; use at most {trained}."
        )
    return asked


def count_params(
    *,
    n_layers: int,
    hidden_size: int,
    n_heads: int,
    n_kv_heads: int,
    vocab_size: int,
    intermediate_size: int,
    head_dim: int | None = None,
    tied_embeddings: bool = False,
    qkv_bias: bool = False,
    n_experts: int = 1,
) -> int:
    """Parameters of a Llama-family decoder (Llama, Mistral, Qwen2, ...) from its
    config: embeddings, per layer q/k/v/o + gated MLP (per expert) + two norms,
    the final norm, and the output head unless it is tied to the embeddings."""
    hd = head_dim or hidden_size // n_heads
    q, kv = n_heads * hd, n_kv_heads * hd
    attention = hidden_size * q + 2 * hidden_size * kv + q * hidden_size
    if qkv_bias:
        attention += q + 2 * kv
    mlp = 3 * hidden_size * intermediate_size * n_experts
    if n_experts > 1:
        mlp += hidden_size * n_experts  # the router
    layer = attention + mlp + 2 * hidden_size
    head = 0 if tied_embeddings else vocab_size * hidden_size
    return vocab_size * hidden_size + n_layers * layer + hidden_size + head


def llamacpp_overhead(
    *, vocab_size: int, hidden_size: int, intermediate_size: int, sequences: int
) -> int:
    """What llama.cpp holds besides weights and KV cache: its tokenizer tables, the
    compute buffer of one micro-batch (f32 hidden states and MLP intermediates),
    and one row of f32 logits per sequence."""
    vocab = vocab_size * LLAMACPP_BYTES_PER_VOCAB_ENTRY
    compute = LLAMACPP_UBATCH * (3 * hidden_size + 2 * intermediate_size) * 4
    logits = sequences * vocab_size * 4
    return vocab + compute + logits


def gpu_overhead(
    *,
    hidden_size: int,
    intermediate_size: int,
    vocab_size: int,
    activation_bytes: float,
    sequences: int,
    tp: int = 1,
) -> int:
    """Per GPU for a vLLM-style server: the CUDA runtime, the activation peak of one
    step of ``GPU_BATCHED_TOKENS`` tokens (MLP intermediates split by ``tp``, hidden
    states not), and f32 logits for one token per sequence."""
    per_token = (2 * intermediate_size / tp + 4 * hidden_size) * activation_bytes
    activations = GPU_BATCHED_TOKENS * per_token
    logits = sequences * vocab_size * 4
    return int(GPU_RUNTIME_BYTES + activations + logits)


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory a model needs, term by term. ``*_bytes`` are whole-model figures;
    ``*_per_device`` what each of ``tp`` devices holds."""

    n_params: int
    weight_format: str  # "float16", "int4", or a GGUF's quantisation ("Q4_K_M")
    bytes_per_param: float
    weights_bytes: int
    n_layers: int
    n_kv_heads: int
    head_dim: int
    kv_bytes_per_value: float
    kv_bytes_per_token: int  # all layers, all KV heads, one sequence
    context: int
    sequences: int
    kv_tokens: int  # the KV cache, in tokens: context x sequences, or a shared pool
    kv_bytes: int
    overhead_bytes: int  # per device
    overhead_covers: str
    tp: int
    weights_per_device: int
    kv_heads_per_device: int
    kv_per_device: int

    @property
    def per_device_bytes(self) -> int:
        return self.weights_per_device + self.kv_per_device + self.overhead_bytes

    @property
    def total_bytes(self) -> int:
        return self.per_device_bytes * self.tp

    @property
    def kv_bytes_per_token_per_device(self) -> int:
        return int(
            kv_bytes_per_token(
                self.n_layers, self.kv_heads_per_device, self.head_dim, self.kv_bytes_per_value
            )
        )


def estimate_memory(
    *,
    n_params: int,
    weight_format: str,
    n_layers: int,
    n_kv_heads: int,
    head_dim: int,
    context: int,
    overhead_bytes: int,
    overhead_covers: str,
    bytes_per_param: float | None = None,
    weights_bytes: int | None = None,
    kv_bytes_per_value: float = 2.0,
    sequences: int = 1,
    tp: int = 1,
    kv_tokens: int | None = None,
) -> MemoryEstimate:
    """Weights + KV cache + overhead. Give ``bytes_per_param`` (a dtype) or the
    real ``weights_bytes`` (a GGUF's tensors). With tensor parallelism the weights
    split ``tp`` ways and so do the KV heads, but never below one head per device:
    with fewer KV heads than devices each device keeps a copy of one (as vLLM does).
    ``kv_tokens``: a KV pool of that many tokens that the sequences share (llama.cpp
    here); else each sequence holds its whole ``context``."""
    kv_tokens = kv_tokens or context * sequences
    if weights_bytes is None:
        if bytes_per_param is None:
            raise ValueError("give bytes_per_param or weights_bytes")
        weights_bytes = math.ceil(n_params * bytes_per_param)
    elif bytes_per_param is None:
        bytes_per_param = weights_bytes / n_params if n_params else 0.0
    if tp < 1 or sequences < 1 or context < 1:
        raise ValueError("tp, sequences and context must be at least 1")
    per_token = int(kv_bytes_per_token(n_layers, n_kv_heads, head_dim, kv_bytes_per_value))
    heads_per_device = max(1, math.ceil(n_kv_heads / tp))
    per_token_device = kv_bytes_per_token(n_layers, heads_per_device, head_dim, kv_bytes_per_value)
    return MemoryEstimate(
        n_params=n_params,
        weight_format=weight_format,
        bytes_per_param=bytes_per_param,
        weights_bytes=weights_bytes,
        n_layers=n_layers,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        kv_bytes_per_value=kv_bytes_per_value,
        kv_bytes_per_token=per_token,
        context=context,
        sequences=sequences,
        kv_tokens=kv_tokens,
        kv_bytes=per_token * kv_tokens,
        overhead_bytes=overhead_bytes,
        overhead_covers=overhead_covers,
        tp=tp,
        weights_per_device=math.ceil(weights_bytes / tp),
        kv_heads_per_device=heads_per_device,
        kv_per_device=int(per_token_device * kv_tokens),
    )


def max_context(est: MemoryEstimate, budget_bytes: int) -> int:
    """The longest context per sequence that keeps ``est`` within ``budget_bytes``
    per device (0 when weights and overhead alone do not fit)."""
    room = budget_bytes - est.weights_per_device - est.overhead_bytes
    per_token = est.kv_bytes_per_token_per_device * est.sequences
    return max(0, room // per_token) if per_token else 0


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units, as memory is sold and reported."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def human_count(n: int) -> str:
    """134515008 -> "134.52M", the way model sizes are written."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}".rstrip("0").rstrip(".") + unit
    return str(n)
