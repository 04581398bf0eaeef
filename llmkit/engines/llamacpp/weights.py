"""One GGUF's weights, loaded once and shared by every context that runs on them:
the base model's own and one per LoRA adapter served under its own name.

llama.cpp applies LoRA adapters per context (``llama_set_adapters_lora``), not per
sequence, so a served adapter gets a context (and a KV pool, and a decode loop)
of its own on the same ``llama_model``: the weights sit in memory once, each
context adds its KV cache and compute buffers. The first engine to load takes
the weights, the last to unload frees them, whichever served model's
``keep_alive`` runs out first; the adapters are loaded once on the weights
(``llama_adapter_lora_init``) and live as long as they do.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import llama_cpp
from llama_cpp import _internals

from llmkit.errors import EngineError, ModelSpecError


class SharedWeights:
    """A ``llama_model`` counted by the contexts that use it. Thread-safe: engines
    load and unload from their own worker threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._model: _internals.LlamaModel | None = None
        self._users = 0
        self._adapters: dict[str, llama_cpp.llama_adapter_lora_p] = {}
        self.loads = 0  # how many times the weights were read from disk (tests, bench)

    def acquire(self, load: Callable[[], _internals.LlamaModel]) -> _internals.LlamaModel:
        """The loaded model, loaded by ``load`` if no context holds it now."""
        with self._lock:
            if self._model is None:
                self._model = load()
                self.loads += 1
            self._users += 1
            return self._model

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._model is None:
                return
            for adapter in self._adapters.values():  # before the model they belong to
                llama_cpp.llama_adapter_lora_free(adapter)
            self._adapters.clear()
            self._model.close()
            self._model = None

    def adapter(self, path: str, label: str) -> llama_cpp.llama_adapter_lora_p:
        """The adapter at ``path`` loaded on these weights (once)."""
        with self._lock:
            if self._model is None:
                raise EngineError(f"{label}: the base model {self.path} is not loaded")
            found = self._adapters.get(path)
            if found is None:
                found = llama_cpp.llama_adapter_lora_init(self._model.model, path.encode())
                if not found:
                    raise ModelSpecError(
                        f"llama.cpp could not apply the LoRA adapter {label} ({path}) to the "
                        f"base model {self.path}: it was made for another model, or is damaged."
                    )
                self._adapters[path] = found
            return found

    @property
    def users(self) -> int:
        return self._users


def set_adapters(
    ctx: llama_cpp.llama_context_p, adapters: list[tuple[llama_cpp.llama_adapter_lora_p, float]]
) -> None:
    """Put ``adapters`` (with their scales) on the context: every sequence it decodes
    runs through them."""
    n = len(adapters)
    arr = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*(a for a, _ in adapters))
    scales = (ctypes.c_float * n)(*(s for _, s in adapters))
    rc = llama_cpp.llama_set_adapters_lora(ctx, arr, n, scales)
    if rc != 0:
        raise EngineError(f"llama.cpp could not set {n} LoRA adapter(s) on a context ({rc})")
