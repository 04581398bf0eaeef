"""What a model is, read from its files without loading it: a GGUF header
(``gguf_header.py``) or a Hugging Face directory's ``config.json``, safetensors
headers and tokenizer config, into one ``ModelFacts``.

``list``, ``show``, ``mem`` and the fit check before ``serve`` all start here.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmkit.core.types import EngineInfo
from llmkit.errors import ModelSpecError
from llmkit.models.gguf_header import (
    GGUFHeader,
    gguf_shards,
    is_gguf,
    read_gguf_header,
    tensor_totals,
)
from llmkit.models.sizing import count_params, human_count

_SAFETENSORS_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


@dataclass(frozen=True)
class ModelFacts:
    """Everything llmkit knows about a model's shape; None where the files do not say."""

    format: str  # "gguf", "safetensors", or "config" (a config.json alone)
    architecture: str | None = None
    n_params: int | None = None
    params_counted: bool = False  # from the tensors themselves, not estimated from the config
    n_layers: int | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    context_length: int | None = None
    dtype: str | None = None  # what a HF model's weights are stored in ("bfloat16")
    quantization: str | None = None  # a GGUF's file type ("Q4_K_M"), or e.g. "awq 4-bit"
    weights_bytes: int | None = None  # the weight tensors as stored
    chat_template: bool = False
    license: str | None = None
    model_name: str | None = None  # what the model calls itself, when it says

    @property
    def weight_format(self) -> str:
        return self.quantization or self.dtype or "unknown"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_facts(path: Path) -> ModelFacts:
    """Facts of a .gguf file or a Hugging Face model directory."""
    path = Path(path)
    if path.is_dir():
        return read_hf_dir(path)
    if is_gguf(path):
        return read_gguf(path)
    raise ModelSpecError(f"{path} is neither a .gguf file nor a model directory.")


# -- GGUF ---------------------------------------------------------------------


def read_gguf(path: Path) -> ModelFacts:
    header = read_gguf_header(path)
    shards = [tensor_totals(read_gguf_header(shard)) for shard in gguf_shards(path)[1:]]
    return gguf_facts(header, extra_params=sum(p for p, _ in shards),
                      extra_bytes=sum(b for _, b in shards))  # fmt: skip


def gguf_facts(header: GGUFHeader, *, extra_params: int = 0, extra_bytes: int = 0) -> ModelFacts:
    """Facts of a GGUF from its header (a file's, or a remote file's first bytes);
    ``extra_*``: the tensors of a split model's other shards."""
    f = header.fields

    def number(key: str) -> int | None:
        v = f.get(key)
        if isinstance(v, list):  # per-layer values: the largest
            v = max(v, default=None)
        return v if isinstance(v, int) else None

    arch = f.get("general.architecture") or "llama"
    n_params, weights = tensor_totals(header)
    n_params, weights = n_params + extra_params, weights + extra_bytes
    n_heads = number(f"{arch}.attention.head_count")
    hidden = number(f"{arch}.embedding_length")
    head_dim = number(f"{arch}.attention.key_length") or (
        hidden // n_heads if hidden and n_heads else None
    )
    return ModelFacts(
        format="gguf",
        architecture=arch,
        n_params=n_params,
        params_counted=True,
        n_layers=number(f"{arch}.block_count"),
        hidden_size=hidden,
        intermediate_size=number(f"{arch}.feed_forward_length"),
        n_heads=n_heads,
        n_kv_heads=number(f"{arch}.attention.head_count_kv") or n_heads,
        head_dim=head_dim,
        vocab_size=number(f"{arch}.vocab_size") or number("tokenizer.ggml.tokens"),
        context_length=number(f"{arch}.context_length"),
        quantization=_file_type(number("general.file_type"), header),
        weights_bytes=weights,
        chat_template=bool(f.get("tokenizer.chat_template")),
        license=f.get("general.license"),
        model_name=f.get("general.name"),
    )


def _file_type(code: int | None, header: GGUFHeader) -> str:
    import gguf

    if code is not None:
        try:
            return gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    # No (known) file type: name it after the type most of the matrices use.
    kinds = [gguf.GGMLQuantizationType(t).name for _, shape, t in header.tensors if len(shape) > 1]
    return max(set(kinds), key=kinds.count) if kinds else "unknown"


# -- Hugging Face directories ---------------------------------------------------


def read_hf_dir(path: Path) -> ModelFacts:
    """A directory with ``config.json`` (and usually safetensors weights)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelSpecError(
            f"{path} has no config.json and no .gguf file: not a model directory llmkit can read."
        )
    try:
        config = json.loads(config_file.read_text())
    except ValueError as e:
        raise ModelSpecError(f"{config_file} is not valid JSON: {e}") from None
    counted = _safetensors_params(sorted(path.glob("*.safetensors")))
    index = _read_json(path / "model.safetensors.index.json")
    total_size = (index or {}).get("metadata", {}).get("total_size")
    facts = facts_from_config(config)
    n_params, weights, exact = facts.n_params, None, False
    if counted:
        n_params, weights = counted
        exact = True
    elif total_size and facts.dtype in ("bfloat16", "float16", "float32"):
        # The index records the bytes of every tensor: exact, once divided by the dtype's size.
        weights = int(total_size)
        n_params = weights // (4 if facts.dtype == "float32" else 2)
        exact = True
    tokenizer_config = _read_json(path / "tokenizer_config.json") or {}
    template = bool(tokenizer_config.get("chat_template")) or any(
        (path / name).is_file() for name in ("chat_template.jinja", "chat_template.json")
    )
    return ModelFacts(
        **{
            **asdict(facts),
            "format": "safetensors" if counted else "config",
            "n_params": n_params,
            "params_counted": exact,
            "weights_bytes": weights,
            "chat_template": template,
            "license": _readme_license(path / "README.md"),
        }
    )


def facts_from_config(config: dict[str, Any]) -> ModelFacts:
    """The shape a Hugging Face ``config.json`` describes, with parameters counted
    by the Llama-family formula (``sizing.count_params``)."""
    cfg = {**config, **config.get("text_config", {})}  # multimodal models nest the LM
    hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
    n_heads = cfg.get("num_attention_heads") or cfg.get("n_head")
    n_layers = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    n_kv = cfg.get("num_key_value_heads") or n_heads
    head_dim = cfg.get("head_dim") or (hidden // n_heads if hidden and n_heads else None)
    inter = cfg.get("intermediate_size") or cfg.get("n_inner") or (4 * hidden if hidden else None)
    vocab = cfg.get("vocab_size")
    arch = cfg.get("model_type") or (cfg.get("architectures") or [None])[0]
    n_params = None
    if all((hidden, n_heads, n_layers, n_kv, inter, vocab)):
        n_params = count_params(
            n_layers=n_layers,
            hidden_size=hidden,
            n_heads=n_heads,
            n_kv_heads=n_kv,
            vocab_size=vocab,
            intermediate_size=cfg.get("moe_intermediate_size") or inter,
            head_dim=head_dim,
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            # Qwen2 puts biases on q, k and v; Llama-style configs say so in attention_bias.
            qkv_bias=bool(cfg.get("attention_bias", arch in ("qwen2", "qwen2_moe"))),
            n_experts=cfg.get("num_local_experts") or cfg.get("num_experts") or 1,
        )
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    quant = cfg.get("quantization_config") or {}
    quantization = None
    if quant:
        bits = quant.get("bits") or quant.get("weight_bits")
        quantization = " ".join(
            str(x) for x in (quant.get("quant_method"), bits and f"{bits}-bit") if x
        )
    return ModelFacts(
        format="config",
        architecture=arch,
        n_params=n_params,
        n_layers=n_layers,
        hidden_size=hidden,
        intermediate_size=inter,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        vocab_size=vocab,
        context_length=cfg.get("max_position_embeddings") or cfg.get("n_positions"),
        dtype=str(dtype) if dtype else None,
        quantization=quantization or None,
    )


def _safetensors_params(files: list[Path]) -> tuple[int, int] | None:
    """(parameters, bytes) from the JSON headers of safetensors files: no weights read."""
    n_params = n_bytes = 0
    for f in files:
        try:
            with f.open("rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(length))
        except (OSError, ValueError, struct.error):
            return None
        for name, t in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in t["shape"]:
                count *= d
            n_params += count
            n_bytes += count * _SAFETENSORS_BYTES.get(t["dtype"], 2)
    return (n_params, n_bytes) if files else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _readme_license(readme: Path) -> str | None:
    """``license:`` from a model card's YAML front matter."""
    try:
        text = readme.read_text(errors="replace")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    for line in text.split("\n---", 1)[0].splitlines()[1:]:
        key, _, val = line.partition(":")
        if key.strip() == "license" and val.strip():
            return val.strip().strip("'\"")
    return None


def describe_files(engine: str, path: Path, context: int | None) -> EngineInfo:
    """What listings show of a model before it first loads: its files' facts."""
    try:
        f = read_facts(path)
    except (ModelSpecError, OSError, ValueError):
        return EngineInfo(engine=engine, model=str(path), context_length=context or 0)
    n = f.n_params or 0
    return EngineInfo(
        engine=engine,
        model=str(path),
        context_length=context or f.context_length or 0,
        format=f.format,
        family=f.architecture or "",
        parameter_count=n,
        parameter_size=human_count(n) if n else "",
        quantization=f.weight_format if f.weight_format != "unknown" else "",
        size_bytes=f.weights_bytes or 0,
        license=f.license or "",
    )


def file_mtime(path: Path) -> int:
    return int(path.stat().st_mtime) if path.exists() else 0
