"""Will it fit? Turns a model's facts and how it is to be run into a memory
estimate (``sizing.py``), compares it with a budget (a flag, or this machine's
RAM or GPU memory), and says what to change when it does not fit.

``llmkit mem`` prints the verdict; ``llmkit serve`` calls ``check_fit`` before
loading anything, so a model that cannot fit is refused with numbers instead of
dying out of memory half-way through loading.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from llmkit.errors import ConfigError, InsufficientMemoryError, ModelSpecError
from llmkit.models.metadata import ModelFacts, read_facts
from llmkit.models.sizing import (
    DTYPE_BYTES,
    GGUF_BITS,
    GIB,
    MemoryEstimate,
    estimate_memory,
    format_bytes,
    gpu_overhead,
    llamacpp_overhead,
    max_context,
    normalize_dtype,
    serving_context,
)

log = logging.getLogger("llmkit")

#: The flags each command uses for the knobs a suggestion turns.
MEM_FLAGS = {"context": "--max-model-len", "sequences": "--batch"}
SERVE_FLAGS = {"context": "--max-model-len", "sequences": "--parallel"}
#: Bytes per K or V value in llama.cpp's KV cells: f16 (``engines.llamacpp.model``;
#: a build without llmkit's attention kernel takes 8-bit cells, under this estimate).
LLAMACPP_KV_BYTES = 2.0


@dataclass(frozen=True)
class Plan:
    """How the model is to be run. None: as the model itself says."""

    dtype: str | None = None
    context: int | None = None
    sequences: int = 1
    tp: int = 1
    kv_tokens: int | None = None  # a KV pool the sequences share; None: context x sequences


@dataclass(frozen=True)
class Budget:
    bytes: int  # per device
    source: str  # where the figure comes from, for the verdict line


@dataclass(frozen=True)
class Verdict:
    estimate: MemoryEstimate
    budget: Budget
    fits: bool
    suggestions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def estimate_for(facts: ModelFacts, plan: Plan) -> MemoryEstimate:
    """The estimate for ``facts`` run as ``plan``: a GGUF on llama.cpp (its own
    quantisation, its KV pool in f16 cells), anything else on a vLLM-style GPU server."""
    missing = [
        name
        for name in ("n_params", "n_layers", "n_kv_heads", "head_dim", "hidden_size", "vocab_size")
        if getattr(facts, name) is None
    ]
    if missing:
        raise ModelSpecError(f"Cannot size this model: its metadata lacks {', '.join(missing)}.")
    dtype = normalize_dtype(plan.dtype) if plan.dtype else None
    context = plan.context or facts.context_length or 2048
    inter = facts.intermediate_size or 4 * facts.hidden_size
    common = dict(
        n_params=facts.n_params,
        n_layers=facts.n_layers,
        n_kv_heads=facts.n_kv_heads,
        head_dim=facts.head_dim,
        context=context,
        sequences=plan.sequences,
        tp=plan.tp,
        kv_tokens=plan.kv_tokens,
    )
    if facts.format == "gguf":
        overhead = llamacpp_overhead(
            vocab_size=facts.vocab_size,
            hidden_size=facts.hidden_size,
            intermediate_size=inter,
            sequences=plan.sequences,
        )
        weights = (
            {"bytes_per_param": DTYPE_BYTES[dtype]}
            if dtype
            else {"weights_bytes": facts.weights_bytes}
        )
        return estimate_memory(
            **common,
            **weights,
            weight_format=dtype or facts.weight_format,
            kv_bytes_per_value=LLAMACPP_KV_BYTES,
            overhead_bytes=overhead,
            overhead_covers="llama.cpp tokenizer tables, compute buffer, logits",
        )
    stored = _stored_dtype(facts)
    dtype = dtype or stored
    if dtype is None:  # pre-quantised (AWQ, GPTQ, ...) and no --dtype
        bits = 4 if "4" in (facts.quantization or "") else 8
        bytes_per_param, label = bits / 8, facts.quantization or f"int{bits}"
    else:
        bytes_per_param, label = DTYPE_BYTES[dtype], dtype
    # Activations and the KV cache stay in 16 bits for int8/int4 weights.
    value_bytes = 4.0 if dtype == "float32" else 2.0
    overhead = gpu_overhead(
        hidden_size=facts.hidden_size,
        intermediate_size=inter,
        vocab_size=facts.vocab_size,
        activation_bytes=value_bytes,
        sequences=plan.sequences,
        tp=plan.tp,
    )
    return estimate_memory(
        **common,
        bytes_per_param=bytes_per_param,
        weight_format=label,
        kv_bytes_per_value=value_bytes,
        overhead_bytes=overhead,
        overhead_covers="CUDA runtime, activations of one step, logits",
    )


def _stored_dtype(facts: ModelFacts) -> str | None:
    if facts.quantization:
        return None
    try:
        return normalize_dtype(facts.dtype or "bfloat16")
    except ValueError:
        return "bfloat16"


def judge(
    facts: ModelFacts, plan: Plan, budget: Budget, flags: dict[str, str] = MEM_FLAGS
) -> Verdict:
    est = estimate_for(facts, plan)
    notes = []
    if facts.context_length and est.context > facts.context_length:
        notes.append(
            f"{flags['context']} {est.context} is more than the {facts.context_length} tokens "
            "this model was trained for."
        )
    fits = est.per_device_bytes <= budget.bytes
    suggestions = [] if fits else _suggestions(facts, plan, budget, est, flags)
    return Verdict(est, budget, fits, suggestions, notes)


def _suggestions(
    facts: ModelFacts, plan: Plan, budget: Budget, est: MemoryEstimate, flags: dict[str, str]
) -> list[str]:
    out = []

    def size(p: Plan) -> str:
        return f"{format_bytes(estimate_for(facts, p).per_device_bytes)}"

    ctx = max_context(est, budget.bytes)
    ctx = ctx // 1024 * 1024 if ctx >= 4096 else ctx // 256 * 256  # round, as people type them
    if 256 <= ctx < est.context:
        out.append(f"{flags['context']} {ctx} ({size(replace(plan, context=ctx))})")
    if est.sequences > 1:
        room = budget.bytes - est.weights_per_device - est.overhead_bytes
        n = room // (est.kv_bytes_per_token_per_device * est.context)
        if 1 <= n < est.sequences:
            p = replace(plan, context=est.context, sequences=int(n))
            out.append(f"{flags['sequences']} {n} ({size(p)})")
    if facts.format == "gguf":
        for name, bits in GGUF_BITS.items():
            if bits / 8 >= est.bytes_per_param:
                continue
            weights = math.ceil(facts.n_params * bits / 8 / est.tp)
            total = weights + est.kv_per_device + est.overhead_bytes
            if total <= budget.bytes:
                out.append(
                    f"a {name} quantisation of this model ({bits} bits per weight: "
                    f"{format_bytes(total)})"
                )
                break
    else:
        for dtype in ("int8", "int4"):
            if DTYPE_BYTES[dtype] >= est.bytes_per_param:
                continue
            p = replace(plan, dtype=dtype, context=est.context)
            if estimate_for(facts, p).per_device_bytes <= budget.bytes:
                out.append(
                    f"--dtype {dtype}, i.e. {dtype[3:]}-bit weights as in a GPTQ or AWQ "
                    f"build ({size(p)})"
                )
                break
        for tp in (2, 4, 8):
            if tp <= plan.tp:
                continue
            p = replace(plan, tp=tp, context=est.context)
            if estimate_for(facts, p).per_device_bytes <= budget.bytes:
                out.append(f"--tp {tp} ({size(p)} per device)")
                break
    if not out:
        out.append(
            f"none of the usual changes is enough: the weights alone take "
            f"{format_bytes(est.weights_per_device)} per device"
        )
    return out


def check_fit(facts: ModelFacts, plan: Plan, budget: Budget, what: str) -> MemoryEstimate:
    """The estimate, or InsufficientMemoryError saying by how much and what to change."""
    v = judge(facts, plan, budget, SERVE_FLAGS)
    if v.fits:
        return v.estimate
    e = v.estimate
    tokens = (
        f"{e.context} tokens x {e.sequences} sequences"
        if e.kv_tokens == e.context * e.sequences
        else f"a pool of {e.kv_tokens} tokens"
    )
    raise InsufficientMemoryError(
        f"{what} needs {format_bytes(e.per_device_bytes)} (weights "
        f"{format_bytes(e.weights_per_device)} + KV cache {format_bytes(e.kv_per_device)} for "
        f"{tokens} + overhead "
        f"{format_bytes(e.overhead_bytes)}) but only {format_bytes(budget.bytes)} is there "
        f"({budget.source}). Try: {'; or '.join(v.suggestions)}.",
        estimate=e,
    )


def machine_budget(*, gpu: bool, memory_gib: float | None = None) -> Budget:
    """The memory to plan for: ``memory_gib`` when given (``LLMKIT_MEMORY_GIB``),
    else each GPU's memory when ``gpu`` and nvidia-smi finds one, else the RAM
    available now (what the kernel could hand out without swapping)."""
    if memory_gib is not None:
        return Budget(int(memory_gib * GIB), "LLMKIT_MEMORY_GIB")
    if gpu:
        gpus = gpu_memory()
        if gpus:
            return Budget(min(gpus), f"memory of each of the {len(gpus)} GPU(s) found")
    return Budget(available_ram(), "RAM available on this machine")


def available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gpu_memory() -> list[int]:
    """Total memory of each NVIDIA GPU, in bytes; empty without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return [int(float(x)) * 1024**2 for x in out.split() if x.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


#: Automatic sizing plans for this share of the budget: the rest stays free for
#: the machine's other programs (llama.cpp holds its whole KV cache from the start).
AUTO_SHARE = 0.75
#: The shortest context automatic sizing settles for before it serves fewer
#: sequences at once (never more than the model's own).
AUTO_MIN_CONTEXT = 2048
#: Sequences served at once when ``--parallel`` is not given (and memory allows).
DEFAULT_PARALLEL = 4


@dataclass(frozen=True)
class ServingChoice:
    context: int  # per sequence
    sequences: int
    line: str  # why, with the numbers: the server logs it
    kv_tokens: int  # the KV pool


def choose_serving(
    facts: ModelFacts,
    budget: Budget,
    *,
    max_model_len: int | None,
    parallel: int | None,
    kv_cache_size: int | None = None,
) -> ServingChoice:
    """The context and sequences a GGUF is served with on llama.cpp. What the user
    set stands (a ``max_model_len`` past the trained context is refused). Else the
    largest context up to the trained one whose weights + KV cache + overhead fit in
    ``AUTO_SHARE`` of ``budget``, for ``DEFAULT_PARALLEL`` sequences, or 2, or 1
    (unless ``parallel`` is given) when that context would be shorter than
    ``AUTO_MIN_CONTEXT``. Never a context silently shorter than asked: a prompt
    longer than the chosen one is refused with the numbers, not truncated.
    ``kv_cache_size``: the sequences share a KV pool of that many tokens instead of
    ``context`` x ``sequences`` (the default pool)."""
    trained = facts.context_length or 2048
    if max_model_len is not None:
        ctx = serving_context(trained, max_model_len, kv_per_token=None, sequences=1, ram_bytes=0)
        p = parallel or DEFAULT_PARALLEL
        why = "--max-model-len as given"
    else:
        usable = int(budget.bytes * AUTO_SHARE)
        floor = min(trained, AUTO_MIN_CONTEXT)
        for p in [parallel] if parallel else [DEFAULT_PARALLEL, 2, 1]:
            most = max_context(estimate_for(facts, Plan(context=trained, sequences=p)), usable)
            ctx = min(trained, most // 256 * 256 if most < 4096 else most // 1024 * 1024)
            if ctx >= floor:
                break
        if ctx == trained:
            why = f"all {trained} the model was trained for"
        elif ctx >= floor:
            why = f"the most that fits of the {trained} it was trained for"
        else:  # the fit check judges the floor against the whole budget
            ctx, why = floor, f"no less than {floor} of the {trained} it was trained for"
        why += f"; planned in {AUTO_SHARE:.0%} of the budget, {format_bytes(usable)}"
    e = estimate_for(facts, Plan(context=ctx, sequences=p, kv_tokens=kv_cache_size))
    pool = kv_cache_size or ctx * p
    line = (
        f"context {ctx} tokens, {p} sequence{'s' if p > 1 else ''} ({why}), sharing a KV "
        f"pool of {pool} tokens: weights "
        f"{format_bytes(e.weights_per_device)} + KV cache {format_bytes(e.kv_per_device)} + "
        f"overhead {format_bytes(e.overhead_bytes)} = {format_bytes(e.per_device_bytes)} of "
        f"{format_bytes(budget.bytes)} ({budget.source})"
    )
    return ServingChoice(ctx, p, line, pool)


def fit_before_serving(
    path: Path,
    name: str,
    *,
    max_model_len: int | None,
    parallel: int | None,
    memory_gib: float | None,
    kv_cache_size: int | None = None,
) -> MemoryEstimate:
    """``check_fit`` for a GGUF about to be served on llama.cpp, at the context,
    sequences and KV pool ``choose_serving`` picks (``parallel`` None: not given), against RAM
    (or ``LLMKIT_MEMORY_GIB``); the choice is logged. The estimate's ``context`` and
    ``sequences`` are what the engine must load with."""
    facts = read_facts(path)
    budget = machine_budget(gpu=False, memory_gib=memory_gib)
    choice = choose_serving(
        facts, budget, max_model_len=max_model_len, parallel=parallel, kv_cache_size=kv_cache_size
    )
    if choice.kv_tokens < choice.context:
        raise ConfigError(
            f"--kv-cache-size {choice.kv_tokens} cannot hold one sequence of the "
            f"{choice.context}-token context; give at least {choice.context}, or a "
            "shorter --max-model-len."
        )
    # The pool as given stands in the suggestions; the default one follows their context.
    plan = Plan(context=choice.context, sequences=choice.sequences, kv_tokens=kv_cache_size)
    estimate = check_fit(facts, plan, budget, what=name)
    log.info("%s: %s", name, choice.line)
    return estimate


def fit_before_transformers(
    path: Path,
    name: str,
    *,
    device: str,
    dtype: str,
    max_model_len: int | None,
    parallel: int,
    memory_gib: float | None,
) -> MemoryEstimate:
    """``check_fit`` for the transformers engine: on the CPU (``auto`` without a
    GPU) the weights are float32 unless ``--dtype`` says otherwise, a GGUF's
    included (transformers dequantizes it); on a GPU, the checkpoint's own type.
    The KV cache is counted for ``parallel`` sequences of the context
    ``serving_context`` chooses, which the estimate's ``context`` hands on to the
    engine. For a GGUF the figure is a floor (its KV cache is sized as llama.cpp's
    16-bit one; float32 doubles it): this check refuses only what surely cannot fit."""
    on_gpu = device.startswith("cuda") or (device == "auto" and bool(gpu_memory()))
    facts = read_facts(path)
    context = serving_context(
        facts.context_length or 2048,
        max_model_len,
        kv_per_token=None,  # its cache grows with each sequence: nothing reserved at load
        sequences=parallel,
        ram_bytes=0,
    )
    plan = Plan(
        dtype=dtype if dtype != "auto" else (None if on_gpu else "float32"),
        context=context,
        sequences=parallel,
    )
    return check_fit(facts, plan, machine_budget(gpu=on_gpu, memory_gib=memory_gib), what=name)
