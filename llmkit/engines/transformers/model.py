"""Load a model with Hugging Face transformers, the "from source" way: a model
directory (config.json + safetensors) or a GGUF file through transformers' own
GGUF loader (which dequantizes the weights to float), with
``AutoTokenizer``/``AutoModelForCausalLM``, on the device and in the dtype asked
for. Also what the engine asks of the tokenizer: prompts through the tokenizer's
own chat template, and text deltas that never split a character.

torch and transformers are an optional extra; ``require_transformers`` says how
to install them before anything is loaded.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmkit.core.tools import tools_as_json
from llmkit.core.types import EngineInfo, Message, Tool
from llmkit.engines.chat_template import CHATML, render_chat
from llmkit.engines.families import Family, detect
from llmkit.engines.tool_prompt import template_knows_tools, template_messages
from llmkit.errors import ConfigError, EngineError, InvalidRequestError
from llmkit.models.sizing import human_count

log = logging.getLogger("llmkit.engine.transformers")
INSTALL_HINT = (
    "The transformers engine needs torch and transformers: pip install 'llmkit[transformers]'"
)


def require_transformers(gguf: bool) -> None:
    """Refuse now, with the install line, when the extra is missing."""
    needed = ["torch", "transformers"] + (["accelerate"] if gguf else [])
    missing = [m for m in needed if not _importable(m)]
    if missing:
        raise ConfigError(f"{INSTALL_HINT} (missing: {', '.join(missing)}).")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class LoadedHF:
    """A tokenizer and a model in eval mode. One thread drives the model (the decode
    loop's); text is encoded from any."""

    def __init__(
        self,
        source: Path,
        *,
        gguf_file: str | None,
        device: str,
        dtype: str,
        threads: int | None,
        n_ctx: int,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ) -> None:
        """``n_ctx``: the context each sequence gets, as the fit check chose it."""
        import torch
        import transformers

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        # A model's own Python never runs here, and weights load only from
        # safetensors (or GGUF), never from pickles, unless the user says so.
        kwargs["trust_remote_code"] = trust_remote_code
        weights_kw = {} if gguf_file or allow_pickle else {"use_safetensors": True}
        self.device = torch.device(_device(torch, device))
        try:
            config = transformers.AutoConfig.from_pretrained(source, **kwargs)
            # A vision model (a vision tower in its config) reads images through its
            # processor, which also holds its tokenizer.
            self.processor = None
            if getattr(config, "vision_config", None) is not None and not gguf_file:
                self.processor = transformers.AutoProcessor.from_pretrained(source, **kwargs)
                self.tokenizer = self.processor.tokenizer
                auto = transformers.AutoModelForImageTextToText
            else:
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
                auto = transformers.AutoModelForCausalLM
            self.dtype = _dtype(torch, dtype, self.device, config)
            # transformers 5 calls it dtype; 4.x torch_dtype
            major = int(transformers.__version__.split(".")[0])
            dtype_kw = "dtype" if major >= 5 else "torch_dtype"
            # The config read above, handed on: read again it costs a second parse of
            # a GGUF's header (seconds: its vocabulary arrays).
            model = auto.from_pretrained(
                source, config=config, **kwargs, **weights_kw, **{dtype_kw: self.dtype}
            )
        except (OSError, ValueError) as e:
            pickles = not gguf_file and not allow_pickle and not any(source.glob("*.safetensors"))
            if pickles and any(source.glob("*.bin")):
                raise EngineError(
                    f"{source} holds its weights only as pickle files (.bin), which can run "
                    "code when loaded; llmkit loads safetensors. If you trust this model, "
                    "pass --allow-pickle."
                ) from e
            raise EngineError(f"transformers could not load {source}: {e}") from e
        self.model = model.to(self.device).eval()
        self.config = config
        params = inspect.signature(self.model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.n_ctx = n_ctx
        text_config = getattr(config, "text_config", None) or config
        self.n_ctx_train = int(getattr(text_config, "max_position_embeddings", 0) or 2048)
        vocab = getattr(self.model.config, "vocab_size", 0) or getattr(text_config, "vocab_size", 0)
        self.n_vocab = int(vocab or len(self.tokenizer))
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.source = source
        self.gguf_file = gguf_file
        self._encoding = threading.Lock()

    # -- tokens ---------------------------------------------------------------------

    def chat_text(
        self,
        messages: tuple[Message, ...],
        tools: tuple[Tool, ...] = (),
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        """The prompt through the tokenizer's own chat template; ``variables``: more
        for the template (a family's thinking switch)."""
        tok = self.tokenizer
        if not tok.chat_template:
            return render_chat(CHATML, messages, tools=tools, variables=variables)
        import jinja2

        native = template_knows_tools(str(tok.chat_template))
        msgs = template_messages(messages, tools, native=native)
        offered = tools_as_json(tools) if native and tools else None
        try:
            return str(
                tok.apply_chat_template(
                    msgs,
                    tools=offered,
                    tokenize=False,
                    add_generation_prompt=True,
                    **dict(variables or {}),
                )
            )
        except jinja2.TemplateError as e:
            raise InvalidRequestError(
                f"The model's chat template rejected the messages: {e}", param="messages"
            ) from e

    # -- images -----------------------------------------------------------------------

    @property
    def image_marker(self) -> str | None:
        """The processor's image token, which it expands to the image's tokens."""
        if self.processor is None:
            return None
        return str(getattr(self.processor, "image_token", "") or "") or None

    def encode_with_images(self, text: str, images: list[Any]) -> tuple[list[int], dict]:
        """A rendered prompt with one ``image_marker`` per image, through the
        processor: the token ids (each image's tokens spelled out) and the model's
        image inputs (pixel values, their masks), on the model's device."""
        from PIL import Image as PILImage

        pics = []
        for img in images:
            with PILImage.open(io.BytesIO(img.data)) as pic:
                pics.append(pic.convert("RGB"))
        with self._encoding:
            out = self.processor(
                text=text, images=pics, add_special_tokens=False, return_tensors="pt"
            )
        ids = [int(t) for t in out["input_ids"][0]]
        extra = {
            k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in out.items()
            if k not in ("input_ids", "attention_mask")
        }
        return ids, extra

    def family(self) -> Family:
        """The model's family, from the tokenizer's chat template and the config."""
        meta = {k: str(v) for k, v in self.info_metadata().items()}
        return detect(str(self.tokenizer.chat_template or ""), meta)

    def info_metadata(self) -> dict[str, str]:
        """The config's facts, under the GGUF metadata names family detection reads."""
        arch = str(getattr(self.config, "model_type", "") or "")
        name = str(getattr(self.config, "_name_or_path", "") or self.source.name)
        return {
            "general.architecture": arch,
            "general.name": name,
            f"{arch}.context_length": str(self.n_ctx_train),
        }

    def encode_text(self, text: str, *, special: bool) -> list[int]:
        """``special``: add the tokenizer's own special tokens (a BOS) where it would."""
        # Requests render and tokenize in worker threads, and a fast tokenizer may
        # refuse ("Already borrowed") a second caller while it adjusts its settings.
        with self._encoding:
            return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def decode(self, ids: list[int], special: bool = False) -> str:
        """``special``: control tokens' text too (a model family's markers)."""
        return self.tokenizer.decode(ids, skip_special_tokens=not special)

    def piece_after(self, context: list[int], token: int) -> bytes:
        """The text ``token`` would add after ``context`` (a few tokens before it, so
        a word-initial space shows), as bytes: an alternative's ``Logprob.piece``."""
        before = self.decode(context)
        return self.decode([*context, token])[len(before) :].encode("utf-8")

    def delta(self, ids: list[int], offsets: list[int], *, special: bool = False) -> str:
        """New text of ``ids`` since the last call (``offsets``: [prefix, read], kept by
        the caller). A few earlier tokens are decoded along so word-initial spaces
        come out right; text ending in half a character waits for the rest."""
        prefix = self.decode(ids[offsets[0] : offsets[1]], special)
        full = self.decode(ids[offsets[0] :], special)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            offsets[0], offsets[1] = offsets[1], len(ids)
            return full[len(prefix) :]
        return ""

    # -- facts --------------------------------------------------------------------

    def info(self, thinks: bool = False) -> EngineInfo:
        """``thinks``: the model's family thinks (Ollama's "thinking" capability)."""
        n_params = sum(p.numel() for p in self.model.parameters())
        size = sum(p.numel() * p.element_size() for p in self.model.parameters())
        arch = str(getattr(self.config, "model_type", "") or "")
        dtype = str(self.dtype).removeprefix("torch.")
        return EngineInfo(
            engine="transformers",
            model=str(self.source / self.gguf_file if self.gguf_file else self.source),
            context_length=self.n_ctx,
            details={"device": str(self.device), "dtype": dtype, "trained": self.n_ctx_train},
            format="gguf" if self.gguf_file else "safetensors",
            family=arch,
            parameter_count=n_params,
            parameter_size=human_count(n_params),
            quantization=dtype,
            size_bytes=size,
            chat_template=self.tokenizer.chat_template or "",
            metadata={
                "general.architecture": arch,
                f"{arch}.context_length": str(self.n_ctx_train),
            },
            capabilities=(
                "completion",
                *(("thinking",) if thinks else ()),
                *(("vision",) if self.image_marker else ()),
            ),
        )


def _device(torch: Any, device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device}: torch {torch.__version__} sees no CUDA GPU here; "
            "use --device cpu (or auto), or install a CUDA build of torch."
        )
    return device


def _dtype(torch: Any, dtype: str, device: Any, config: Any) -> Any:
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cpu":
        return torch.float32  # half precision on a CPU is slower, not faster
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if stored in (torch.float16, torch.bfloat16, "float16", "bfloat16"):
        return getattr(torch, str(stored).removeprefix("torch."))
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)
