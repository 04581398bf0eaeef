"""Thinking on the wire, what every dialect shares: effort words read into the
core switch (``GenerateRequest.think`` / ``effort``), and the refusal of
thinking asked of a model that cannot think.

Each dialect names effort its own way. OpenAI's ``reasoning_effort`` (and the
Responses API's ``reasoning.effort``) goes from ``none`` to ``max``; Anthropic's
``output_config.effort`` from ``low`` to ``max``; Ollama's ``think`` takes
``low``, ``medium`` or ``high``. Core has three levels: ``none`` and ``minimal``
switch thinking off (the least a local model can think is not at all), and the
levels above ``high`` are ``high`` (the most a family's template or budget
offers). A level alone leaves ``think`` to the model's default, so a model that
cannot think answers it as it would without it (as vLLM does, where an unknown
template variable is ignored); only thinking asked for outright is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmkit.core.types import Effort, EngineInfo, GenerateRequest
from llmkit.errors import InvalidRequestError, ThinkingUnsupportedError

# OpenAI's ReasoningEffort values, in its order (the spec's enum).
OPENAI_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# Anthropic's output_config.effort values.
ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_OFF = {"none", "minimal"}
_TOP: dict[str, Effort] = {"xhigh": "high", "max": "high"}


def quoted(values: Sequence[str]) -> str:
    """``"a", "b" or "c"``: allowed values as a 400 names them."""
    q = [f'"{v}"' for v in values]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " or " + q[-1]


def read_effort(
    value: object, allowed: Sequence[str], param: str
) -> tuple[bool | None, Effort | None]:
    """``(think, effort)`` for an effort word of a dialect (None: not given), or
    a 400 naming ``param`` and the values it takes."""
    if value is None:
        return None, None
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequestError(
            f"{param} must be one of {quoted(allowed)}; got {value!r}.", param=param
        )
    if value in _OFF:
        return False, None
    return None, _TOP.get(value, value)  # type: ignore[return-value]


def refuse_thinking(
    model: str, info: EngineInfo, reqs: Sequence[GenerateRequest], param: str
) -> None:
    """The dialect's own error for thinking asked of a model that cannot think
    (its ``capabilities`` lack "thinking"), before any work; ``think: false``
    and effort levels are answered as usual. ``param``: the field that asked."""
    if "thinking" in info.capabilities or not any(r.think for r in reqs):
        return
    raise ThinkingUnsupportedError(model, param=param)
