"""A tiny cross-encoder made in the test setup, and its GGUF: what the rerank
tests hold llmkit to transformers with.

The model is an ``XLMRobertaForSequenceClassification`` with one label, random
weights and a sentencepiece (unigram) vocabulary trained here on a few lines:
the architecture of bge-reranker, the GGUF rerankers people serve. A BERT
cross-encoder would not do: llama.cpp's converter recognises a WordPiece
vocabulary only by hashing how it splits a fixed text (a vocabulary made here
matches no known one), and it drops BERT's pooler layer, which
``BertForSequenceClassification`` puts before its classifier; XLM-RoBERTa's head
(dense, tanh, out_proj on the first token) is what llama.cpp's rank pooling
computes.

The GGUF is written by llama.cpp's own converter from the pinned source (in
``<venv>/llama.cpp``, where scripts/bootstrap.sh puts it, or
``LLMKIT_LLAMA_CPP_REF``), in float32 so the two sides differ only by
arithmetic order.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

#: llama.cpp's reference sources: converters, templates.
REF = Path(os.environ.get("LLMKIT_LLAMA_CPP_REF") or Path(sys.prefix) / "llama.cpp")

CORPUS = [
    "The cat sat on the mat.",
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "A reranker scores how well a document answers a query.",
    "Llamas live in the Andes mountains.",
    "Python is a programming language.",
    "The quick brown fox jumps over the lazy dog.",
    "Water boils at one hundred degrees.",
    "The stock market fell today.",
    "What is the capital of France?",
]
#: Positions the model has, so a pair may hold 128 tokens (XLM-RoBERTa's two go
#: to the padding offset).
POSITIONS = 130
#: The tiny model's shape; bench/rerank.py makes one of bge-reranker-base's.
TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=POSITIONS,
)


def make_cross_encoder(out: Path, shape: dict | None = None) -> Path:
    """Write the model directory (safetensors, config, tokenizer) to ``out``, of
    ``shape`` (config fields; default ``TINY``)."""
    import sentencepiece as spm
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_writer=buf,
        vocab_size=200,
        model_type="unigram",
        hard_vocab_limit=False,  # as many pieces as the few lines give
        minloglevel=2,
    )
    (out / "sentencepiece.bpe.model").write_bytes(buf.getvalue())
    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(out)
    config = transformers.XLMRobertaConfig(
        vocab_size=len(tokenizer),
        **(shape or TINY),
        type_vocab_size=1,
        num_labels=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        # Wide weights: scores spread over several units, so the order of the
        # documents is far from ties (the default 0.02 gives scores 1e-4 apart).
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    model = transformers.XLMRobertaForSequenceClassification(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_bert_cross_encoder(out: Path) -> Path:
    """A ``BertForSequenceClassification`` (ms-marco-MiniLM's architecture) with a
    WordPiece vocabulary of the corpus's words: for the transformers engine, whose
    pairs must carry BERT's segment ids (llama.cpp's converter cannot take it)."""
    import re

    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    words = sorted({w for line in CORPUS for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    (out / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    )
    tokenizer = transformers.BertTokenizer(vocab=str(out / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        **{**TINY, "max_position_embeddings": 128},
        type_vocab_size=2,  # segment A (the query) and B (the document)
        num_labels=1,
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def convert(model_dir: Path, gguf: Path, outtype: str = "f32") -> Path:
    """The model as a GGUF (float32 by default), by llama.cpp's converter."""
    script = REF / "convert_hf_to_gguf.py"
    assert script.is_file(), (
        f"llama.cpp's converter is missing at {script} (run scripts/bootstrap.sh)"
    )
    cmd = [
        sys.executable,
        str(script),
        str(model_dir),
        "--outfile",
        str(gguf),
        "--outtype",
        outtype,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return gguf


class Reference:
    """The cross-encoder through transformers, as sentence-transformers' CrossEncoder
    runs it: the tokenizer's pair with its special tokens, the first logit."""

    def __init__(self, model_dir: Path) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model.eval()

    def pair_tokens(self, query: str, document: str) -> list[int]:
        return list(self.tokenizer(query, document)["input_ids"])

    def scores(self, query: str, documents: list[str]) -> list[float]:
        import torch

        enc = self.tokenizer([query] * len(documents), documents, padding=True, return_tensors="pt")
        with torch.inference_mode():
            return [float(x) for x in self.model(**enc).logits[:, 0]]
