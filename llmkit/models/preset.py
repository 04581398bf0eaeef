"""What another tool's model folder says about running a model, beyond its
weights: Ollama's manifest layers (system prompt, parameters, template). A
catalog entry carries it; the engine applies what it can (``engines/preset.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    system: str | None = None  # the system message when a chat brings none
    stop: tuple[str, ...] = ()  # stop strings added to every request's own
    num_ctx: int | None = None  # the context to serve with, unless --max-model-len says
    template: str | None = None  # Ollama's Go template: shown, not rendered (see README)
    # Every parameter as the manifest gives it (temperature, top_k...), for `show`.
    parameters: dict[str, Any] = field(default_factory=dict)
