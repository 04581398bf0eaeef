"""A model's defaults, as Ollama's Modelfile states them: ``SYSTEM``, ``TEMPLATE``,
``PARAMETER`` lines, ``MESSAGE`` turns, ``ADAPTER``s (LoRA adapters in GGUF, which
the llama.cpp engine applies to the model's context: ``models/lora.py``).

One type for every source: the layers of a model in Ollama's store
(``ollama_store.py``), a model made here with ``create`` or ``copy``
(``derived.py``, kept in its ``.llmkit.json``). A ``CatalogEntry`` carries it;
the served model applies it to each request, whatever the dialect
(``engines/registry.py``), and the llama.cpp engine serves with its ``num_ctx``.

What a request brings wins: its own system message, its own sampling values and
``max_tokens``. The Modelfile's stop strings are added to the request's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from llmkit.core.types import GenerateRequest, Message, SamplingParams

# Ollama's PARAMETER names that are sampling values, and what each must read as.
_SAMPLING: dict[str, Callable[[Any], Any]] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "seed": int,
    "presence_penalty": float,
    "frequency_penalty": float,
    "repeat_penalty": float,
    "repeat_last_n": int,
}


@dataclass(frozen=True)
class Modelfile:
    """What a model adds to its weights; each part applies where a request leaves it out."""

    system: str | None = None  # the system message when a chat brings none
    template: str | None = None  # Ollama's Go template: wraps /api/generate prompts it can
    # PARAMETER lines as Ollama's options name them: temperature, stop, num_ctx, num_predict...
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()  # turns every chat starts with, after the system message
    adapters: tuple[str, ...] = ()  # LoRA adapters' GGUF paths, applied at scale 1

    @classmethod
    def from_manifest(cls, data: dict[str, Any] | None) -> Modelfile | None:
        """From a ``.llmkit.json``'s ``modelfile`` (any llmkit version's)."""
        if not data:
            return None
        msgs = tuple(Message(m["role"], m.get("content") or "") for m in data.get("messages", []))
        return cls(
            system=data.get("system"),
            template=data.get("template"),
            parameters=dict(data.get("parameters") or {}),
            messages=msgs,
            adapters=tuple(data.get("adapters") or ()),
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "system": self.system,
            "template": self.template,
            "parameters": self.parameters,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
        }
        if self.adapters:  # left out otherwise: the manifest stays as older versions wrote it
            out["adapters"] = list(self.adapters)
        return out

    # -- the parameters, read --------------------------------------------------------

    @property
    def num_ctx(self) -> int | None:
        """The context to serve with (and each request's, unless it says)."""
        n = _number(self.parameters.get("num_ctx"), int)
        return n if n is not None and n > 0 else None

    @property
    def num_predict(self) -> int | None:
        """The reply's length when a request gives none (-1, -2: no limit)."""
        n = _number(self.parameters.get("num_predict"), int)
        return n if n is not None and n > 0 else None

    @property
    def stop(self) -> tuple[str, ...]:
        given = self.parameters.get("stop") or ()
        given = [given] if isinstance(given, str) else given
        if not isinstance(given, list | tuple):
            return ()
        return tuple(s for s in given if isinstance(s, str) and s)

    @property
    def sampling(self) -> SamplingParams:
        """The sampling values the parameters give (None where they say nothing)."""
        values = {k: _number(self.parameters.get(k), cast) for k, cast in _SAMPLING.items()}
        if values["seed"] is not None and values["seed"] < 0:  # Ollama's -1: a random seed
            values["seed"] = None
        return SamplingParams(**values)

    # -- applied to a request --------------------------------------------------------

    def apply(self, req: GenerateRequest) -> GenerateRequest:
        """``req`` with this model's defaults: a chat gets the system prompt (unless it
        has its own) and the stored messages before its own, as Ollama gives a model's
        ``SYSTEM`` and ``MESSAGE``; every request gets the stop strings and, where it
        sets none, the sampling values, ``num_predict`` and ``num_ctx``."""
        changes: dict[str, Any] = {}
        messages = self._chat(req.messages)
        if messages != req.messages:
            changes["messages"] = messages
        stop = tuple(dict.fromkeys((*req.stop, *self.stop)))
        if stop != req.stop:
            changes["stop"] = stop
        sampling = req.sampling.over(self.sampling)
        if sampling is not req.sampling:
            changes["sampling"] = sampling
        if req.max_tokens is None and self.num_predict is not None:
            changes["max_tokens"] = self.num_predict
        if req.context_limit is None and self.num_ctx is not None:
            changes["context_limit"] = self.num_ctx
        return replace(req, **changes) if changes else req

    def _chat(self, messages: tuple[Message, ...] | None) -> tuple[Message, ...] | None:
        if messages is None:
            return None
        own_system = any(m.role == "system" for m in messages)
        head = [] if own_system or not self.system else [Message("system", self.system)]
        if not head and not self.messages:
            return messages
        rest = list(messages)
        lead = [rest.pop(0)] if own_system and rest[0].role == "system" else []
        return (*lead, *head, *self.messages, *rest)


def _number(value: Any, cast: Callable[[Any], Any]) -> Any:
    """``value`` as ``cast`` reads it; None when absent or not a number (a stray
    parameter must not break every request to the model)."""
    if value is None or isinstance(value, bool) or isinstance(value, list | dict):
        return None
    try:
        return cast(value)
    except (TypeError, ValueError):
        return None


def modelfile_text(base: str, mf: Modelfile | None) -> str:
    """The Modelfile ``show`` answers with: ``FROM`` and what the model adds."""
    lines = [f"FROM {base}"]
    if mf is not None:
        if mf.template:
            lines.append(f'TEMPLATE """{mf.template}"""')
        if mf.system:
            lines.append(f'SYSTEM """{mf.system}"""')
        for k, v in mf.parameters.items():
            for one in v if isinstance(v, list) else [v]:
                lines.append(f"PARAMETER {k} {json.dumps(one) if isinstance(one, str) else one}")
        for m in mf.messages:
            lines.append(f'MESSAGE {m.role} """{m.content}"""')
        for a in mf.adapters:
            lines.append(f"ADAPTER {a}")
    return "\n".join(lines) + "\n"
