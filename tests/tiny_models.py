"""Tiny but real model files for the catalog, sizing and pull tests: GGUFs written
with ``gguf.GGUFWriter`` (llama.cpp's writer) and a Hugging Face repository with
config.json, tokenizer config, model card and a safetensors file whose header
is written by hand (the format is 8 bytes of length, a JSON header, the data)."""

from __future__ import annotations

import json
import struct
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import gguf
import numpy as np

from llmkit.models.bundled import bundled_model_path

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: The shape every tiny model has (a Llama with grouped-query attention).
SHAPE = dict(n_layers=2, hidden=64, heads=4, kv_heads=2, ff=128, vocab=256, ctx=512)


def _tensors(
    vocab: int, hidden: int, layers: int, kv: int, ff: int, heads: int = SHAPE["heads"]
) -> dict[str, tuple]:
    head_dim = hidden // heads
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    for i in range(layers):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (hidden,),
            f"blk.{i}.attn_q.weight": (hidden, hidden),
            f"blk.{i}.attn_k.weight": (kv * head_dim, hidden),
            f"blk.{i}.attn_v.weight": (kv * head_dim, hidden),
            f"blk.{i}.attn_output.weight": (hidden, hidden),
            f"blk.{i}.ffn_norm.weight": (hidden,),
            f"blk.{i}.ffn_gate.weight": (ff, hidden),
            f"blk.{i}.ffn_up.weight": (ff, hidden),
            f"blk.{i}.ffn_down.weight": (hidden, ff),
        }
    return shapes


def _add_shape(w: gguf.GGUFWriter, s: dict, ftype: gguf.LlamaFileType) -> None:
    """The llama header fields a shape (``SHAPE``, ``DECLARED``) gives."""
    w.add_block_count(s["n_layers"])
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["hidden"])
    w.add_feed_forward_length(s["ff"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_vocab_size(s["vocab"])
    w.add_file_type(ftype)


def tiny_params(vocab: int = SHAPE["vocab"]) -> int:
    """Parameters of the tiny model (tied embeddings): counted tensor by tensor."""
    s = SHAPE
    shapes = _tensors(vocab, s["hidden"], s["n_layers"], s["kv_heads"], s["ff"])
    return sum(int(np.prod(shape)) for shape in shapes.values())


def tiny_gguf(quant: str = "F16", name: str = "tiny") -> bytes:
    """A llama-architecture GGUF with F32 norms and F16 or Q8_0 matrices."""
    s = SHAPE
    qtype = {"F16": gguf.GGMLQuantizationType.F16, "Q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    ftype = {"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_name(name)
        w.add_license("mit")
        _add_shape(w, s, ftype)
        w.add_token_list([f"tok{i}" for i in range(s["vocab"])])
        w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
        for tname, shape in _tensors(
            s["vocab"], s["hidden"], s["n_layers"], s["kv_heads"], s["ff"]
        ).items():
            data = rng.standard_normal(shape).astype(np.float32)
            if len(shape) == 1:
                w.add_tensor(tname, data)
            else:
                w.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def attention_gguf(path: Path, *, heads: int, kv_heads: int, head_dim: int) -> Path:
    """A tiny llama GGUF that llama.cpp loads and runs (a sentencepiece vocabulary of
    plain tokens), for the attention kernel's tests: ``heads`` query heads sharing
    ``kv_heads`` K/V heads of ``head_dim`` each. Weights are scaled by 1/sqrt(fan-in)
    (but the embeddings) and norms are ones, so scores stay near unit size and
    attention spreads over many cells instead of picking one (a saturated softmax
    would hide errors)."""
    s = dict(SHAPE, hidden=heads * head_dim, heads=heads, kv_heads=kv_heads, ctx=4096)
    f16 = gguf.GGMLQuantizationType.F16
    rng = np.random.default_rng(heads * 1000 + kv_heads * 100 + head_dim)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"attn-{heads}x{kv_heads}x{head_dim}")
    _add_shape(w, s, gguf.LlamaFileType.MOSTLY_F16)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(s["vocab"])])
    w.add_token_scores([0.0] * s["vocab"])
    w.add_token_types([gguf.TokenType.NORMAL] * s["vocab"])
    tensors = _tensors(s["vocab"], s["hidden"], s["n_layers"], kv_heads, s["ff"], heads)
    for tname, shape in tensors.items():
        if len(shape) == 1:
            w.add_tensor(tname, np.ones(shape, dtype=np.float32))
        else:
            data = rng.standard_normal(shape).astype(np.float32)
            if tname != "token_embd.weight":  # the output too (tied): logits spread out
                data /= np.sqrt(shape[-1])
            w.add_tensor(tname, data.astype(np.float16), raw_dtype=f16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def hf_config(vocab: int = SHAPE["vocab"]) -> dict:
    s = SHAPE
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": s["hidden"],
        "intermediate_size": s["ff"],
        "num_hidden_layers": s["n_layers"],
        "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv_heads"],
        "vocab_size": vocab,
        "max_position_embeddings": s["ctx"],
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def safetensors(vocab: int = SHAPE["vocab"]) -> bytes:
    """The tiny model's weights (HF names) in float32, random."""
    s = SHAPE
    head_dim = s["hidden"] // s["heads"]
    shapes = {
        "model.embed_tokens.weight": (vocab, s["hidden"]),
        "model.norm.weight": (s["hidden"],),
    }
    for i in range(s["n_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (s["hidden"],),
            p + "self_attn.q_proj.weight": (s["hidden"], s["hidden"]),
            p + "self_attn.k_proj.weight": (s["kv_heads"] * head_dim, s["hidden"]),
            p + "self_attn.v_proj.weight": (s["kv_heads"] * head_dim, s["hidden"]),
            p + "self_attn.o_proj.weight": (s["hidden"], s["hidden"]),
            p + "post_attention_layernorm.weight": (s["hidden"],),
            p + "mlp.gate_proj.weight": (s["ff"], s["hidden"]),
            p + "mlp.up_proj.weight": (s["ff"], s["hidden"]),
            p + "mlp.down_proj.weight": (s["hidden"], s["ff"]),
        }
    rng = np.random.default_rng(1)
    header, blobs, offset = {}, [], 0
    for name, shape in shapes.items():
        blob = rng.standard_normal(shape).astype("<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def hf_repo(vocab: int = SHAPE["vocab"]) -> dict[str, bytes]:
    """A Hugging Face model repository, file by file."""
    return {
        "config.json": json.dumps(hf_config(vocab)).encode(),
        "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode(),
        "README.md": b"---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# tiny\n",
        "model.safetensors": safetensors(vocab),
        ".gitattributes": b"*.safetensors filter=lfs\n",
    }


def write_repo(directory: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


#: Shape of the "declared" GGUFs: a 1B-parameter Llama whose header says so, with
#: no weights behind it (only the header is ever read from them).
DECLARED = dict(n_layers=16, hidden=2048, heads=32, kv_heads=8, ff=8192, vocab=32000, ctx=4096)


def declared_gguf(quant: str, *, tokens: int = 256, body: int = 300_000) -> bytes:
    """A real GGUF header declaring a 1B model's tensors in ``quant`` (F16, Q8_0
    or Q4_K), then ``body`` bytes of zeros in place of the weights: a file a
    header read sizes like the real thing, small enough for a test to serve.
    ``tokens``: vocabulary strings in the header (more make the header longer)."""
    s = DECLARED
    qtype = gguf.GGMLQuantizationType[quant]
    ftype = {"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "Q4_K": gguf.LlamaFileType.MOSTLY_Q4_K_M}[quant]  # fmt: skip
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_name("declared")
        _add_shape(w, s, ftype)
        w.add_token_list([f"token-{i:08d}" for i in range(tokens)])
        for tname, shape in _declared_tensors().items():
            if len(shape) == 1:
                w.add_tensor_info(tname, shape, np.dtype(np.float32), shape[0] * 4)
            else:
                # gguf takes a quantised tensor's shape in bytes: rows x row bytes.
                rows = (*shape[:-1], shape[-1] // block * size)
                n = int(np.prod(rows))
                w.add_tensor_info(tname, rows, np.dtype(np.uint8), n, raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
        return path.read_bytes() + bytes(body)


def _declared_tensors() -> dict[str, tuple]:
    s = DECLARED
    head_dim = s["hidden"] // s["heads"]
    shapes = {"token_embd.weight": (s["vocab"], s["hidden"]), "output_norm.weight": (s["hidden"],)}
    for i in range(s["n_layers"]):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (s["hidden"],),
            f"blk.{i}.attn_q.weight": (s["hidden"], s["hidden"]),
            f"blk.{i}.attn_k.weight": (s["kv_heads"] * head_dim, s["hidden"]),
            f"blk.{i}.attn_v.weight": (s["kv_heads"] * head_dim, s["hidden"]),
            f"blk.{i}.attn_output.weight": (s["hidden"], s["hidden"]),
            f"blk.{i}.ffn_norm.weight": (s["hidden"],),
            f"blk.{i}.ffn_gate.weight": (s["ff"], s["hidden"]),
            f"blk.{i}.ffn_up.weight": (s["ff"], s["hidden"]),
            f"blk.{i}.ffn_down.weight": (s["hidden"], s["ff"]),
        }
    return shapes


#: A prompt as token ids for the tiny Llama: no tokenizer differences to argue.
LLAMA_IDS = list(range(1000, 1032))


@cache
def bundled_tokenizer() -> PreTrainedTokenizerBase:
    """The bundled model's tokenizer, rebuilt from its GGUF by transformers (no
    download). Seconds of work: once a process, shared by whoever reads it."""
    import transformers

    bundled = Path(bundled_model_path())
    return transformers.AutoTokenizer.from_pretrained(str(bundled.parent), gguf_file=bundled.name)


def make_llama(out: Path, seed: int = 0) -> None:
    """A tiny Llama-architecture causal LM in safetensors (f16, random weights) with
    the bundled model's tokenizer, rebuilt from its GGUF by transformers (no
    download): what the conversion and LoRA tests hold llmkit to transformers on.
    The seed-0 one is made once a session (``tiny_llama`` in conftest)."""
    import torch
    import transformers

    tok = bundled_tokenizer()
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        initializer_range=0.1,
    )  # fmt: skip
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(cfg).to(torch.float16).save_pretrained(out)
    tok.save_pretrained(out)


def reference_logprobs(directory: Path, ids: list[int]) -> np.ndarray:
    """transformers' next-token log-probabilities at each position of ``ids`` for
    the model in ``directory``, in f32 (float64 out)."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits, -1).numpy().astype(np.float64)
