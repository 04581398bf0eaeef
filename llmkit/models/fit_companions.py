"""The fit check for what a served model brings along beside its own weights and
KV cache: LoRA adapters, a vision model's projector and its image encoding, a
draft model for speculative decoding. Each adds its terms to the model's
estimate (``fit.fit_before_serving``) and refuses with the numbers."""

from __future__ import annotations

from pathlib import Path

from llmkit.errors import InsufficientMemoryError
from llmkit.models.fit import Plan, estimate_for, machine_budget
from llmkit.models.metadata import read_facts
from llmkit.models.sizing import MemoryEstimate, format_bytes


def fit_adapters(
    estimate: MemoryEstimate,
    name: str,
    adapters: list[tuple[str, int]],
    *,
    contexts: int,
    memory_gib: float | None,
) -> int:
    """The base model's ``estimate`` plus LoRA adapters on its weights: each adapter's
    tensors (``adapters``: name, bytes), and for each of ``contexts`` adapters served
    as models of their own a second KV pool and compute buffers (llama.cpp applies an
    adapter per context). The weights are counted once. The bytes needed, or
    InsufficientMemoryError with the terms."""
    budget = machine_budget(gpu=False, memory_gib=memory_gib)
    tensors = sum(size for _, size in adapters)
    per_context = estimate.kv_bytes + estimate.overhead_bytes
    need = estimate.per_device_bytes + tensors + contexts * per_context
    if need <= budget.bytes:
        return need
    names = ", ".join(n for n, _ in adapters)
    raise InsufficientMemoryError(
        f"{name} with the LoRA adapters {names} needs {format_bytes(need)} (the base "
        f"{format_bytes(estimate.per_device_bytes)} + adapters {format_bytes(tensors)} + "
        f"{contexts} context(s) of their own, KV cache and buffers "
        f"{format_bytes(per_context)} each) but only {format_bytes(budget.bytes)} is there "
        f"({budget.source}). Try: fewer adapters served at once, a shorter --max-model-len, "
        "or a smaller --parallel.",
        estimate=estimate,
    )


#: Encoded images the llama.cpp engine keeps for reuse (``engines.llamacpp.vision``).
IMAGE_EMBED_CACHE_BYTES = 64 << 20


def projector_compute_bytes(fields: dict) -> int:
    """What encoding one image tile takes beside the projector's weights, from its
    GGUF header: the vision tower's activations (patches x width, a dozen live at
    once through a block: norms, attention's Q/K/V/out, the feed-forward's two)
    and its attention scores (heads x patches^2), in float32. A floor, as the KV
    estimate is: llama.cpp's graph allocator reuses buffers."""
    size = int(fields.get("clip.vision.image_size") or 0)
    patch = int(fields.get("clip.vision.patch_size") or 0) or 1
    width = int(fields.get("clip.vision.embedding_length") or 0)
    ff = int(fields.get("clip.vision.feed_forward_length") or 0) or 4 * width
    heads = int(fields.get("clip.vision.attention.head_count") or 0) or 1
    patches = (size // patch) ** 2
    return 4 * (patches * (12 * width + 2 * ff) + heads * patches * patches)


def fit_projector(
    estimate: MemoryEstimate, name: str, projector: Path, *, memory_gib: float | None
) -> int:
    """The model's ``estimate`` plus a vision projector: its weights (the file), one
    tile's encoding (``projector_compute_bytes``) and the engine's cache of encoded
    images; an image's tokens take the model's KV cells like text, which the
    estimate's context holds already. The bytes needed, or InsufficientMemoryError
    with the terms."""
    from llmkit.models.gguf_header import read_gguf_header

    header = read_gguf_header(projector)
    weights = projector.stat().st_size
    compute = projector_compute_bytes(header.fields) + IMAGE_EMBED_CACHE_BYTES
    budget = machine_budget(gpu=False, memory_gib=memory_gib)
    need = estimate.per_device_bytes + weights + compute
    if need <= budget.bytes:
        return need
    raise InsufficientMemoryError(
        f"{name} with its projector {projector.name} needs {format_bytes(need)} (the model "
        f"{format_bytes(estimate.per_device_bytes)} + projector {format_bytes(weights)} + "
        f"image encoding {format_bytes(compute)}) but only {format_bytes(budget.bytes)} is "
        f"there ({budget.source}). Try: a shorter --max-model-len, a smaller --parallel, or "
        "a smaller quantisation of the model or the projector.",
        estimate=estimate,
    )


def fit_draft(
    estimate: MemoryEstimate,
    name: str,
    draft: Path,
    *,
    slots: int,
    memory_gib: float | None,
) -> int:
    """The served model's ``estimate`` plus a draft model for speculative decoding
    (``--draft-model``): its weights, and a KV cache of the served context for each
    of ``slots`` sequences it drafts for. The bytes needed, or
    InsufficientMemoryError with the terms."""
    budget = machine_budget(gpu=False, memory_gib=memory_gib)
    own = estimate_for(read_facts(draft), Plan(context=estimate.context, sequences=slots))
    need = estimate.per_device_bytes + own.per_device_bytes
    if need <= budget.bytes:
        return need
    raise InsufficientMemoryError(
        f"{name} with the draft model {draft.name} needs {format_bytes(need)} (the model "
        f"{format_bytes(estimate.per_device_bytes)} + the draft's weights, KV cache and "
        f"buffers {format_bytes(own.per_device_bytes)}) but only {format_bytes(budget.bytes)} "
        f"is there ({budget.source}). Try: a smaller draft model, --speculative ngram, or a "
        "shorter --max-model-len.",
        estimate=estimate,
    )
