"""Thinking in Anthropic's Messages API: the request's ``thinking`` and
``output_config.effort`` read into core's switch, and what a thinking block
carries.

``{"type": "enabled", "budget_tokens": n}`` thinks within ``n`` tokens
(``GenerateRequest.reasoning_budget``), under Anthropic's rules: at least 1024,
and less than ``max_tokens``, which counts thinking and answer together.
``{"type": "disabled"}`` switches thinking off; ``adaptive`` (and
``between_tools``) leave it to the model. ``display: "omitted"`` keeps the
blocks but not their text.

Anthropic signs each thinking block so that one sent back can be checked; a
local model has no secret to sign with, but clients (the Vercel AI SDK, Claude
Code) drop thinking blocks without a signature when they build the next
request, so each block gets an opaque one: a digest of its text.
"""

from __future__ import annotations

import hashlib
from typing import Any

from llmkit.api.anthropic import schemas as s
from llmkit.api.reasoning import ANTHROPIC_EFFORTS, quoted, read_effort
from llmkit.core.types import Effort
from llmkit.errors import InvalidRequestError

MIN_BUDGET = 1024  # Anthropic's least budget_tokens
_TYPES = ("enabled", "disabled", "adaptive", "between_tools")
_DISPLAYS = ("summarized", "omitted")


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def read_thinking(
    req: s.PromptFields, max_tokens: int | None
) -> tuple[bool | None, int | None, Effort | None]:
    """``(think, reasoning_budget, effort)``; ``max_tokens`` None for a token
    count, which has none to hold the budget against."""
    _, effort = read_effort(_effort(req), ANTHROPIC_EFFORTS, "output_config.effort")
    cfg = req.thinking
    if cfg is None:
        return None, None, effort
    kind = cfg.get("type")
    if kind not in _TYPES:
        raise _bad(f"thinking.type must be one of {quoted(_TYPES)}; got {kind!r}.", "thinking.type")
    display = cfg.get("display")
    if display is not None and display not in _DISPLAYS:
        raise _bad(
            f"thinking.display must be {quoted(_DISPLAYS)}; got {display!r}.", "thinking.display"
        )
    if kind == "disabled":
        return False, None, effort
    if kind != "enabled":
        return None, None, effort
    budget = cfg.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise _bad(
            "thinking.budget_tokens is required with type 'enabled': a number of tokens.",
            "thinking.budget_tokens",
        )
    if budget < MIN_BUDGET:
        raise _bad(
            f"thinking.budget_tokens must be at least {MIN_BUDGET}; got {budget}.",
            "thinking.budget_tokens",
        )
    if max_tokens is not None and max_tokens <= budget:
        raise _bad(
            f"max_tokens ({max_tokens}) must be greater than thinking.budget_tokens ({budget}): "
            "max_tokens counts the thinking and the answer together.",
            "max_tokens",
        )
    return True, budget, effort


def _effort(req: s.PromptFields) -> Any:
    cfg = req.output_config
    return cfg.get("effort") if isinstance(cfg, dict) else None


def gives_blocks(req: s.PromptFields) -> bool:
    """Thinking blocks only where thinking is on (``enabled``, ``adaptive``), as
    Anthropic sends them: a request that does not ask gets the answer alone, even
    from a model that thinks unasked (R1-distill)."""
    return bool(req.thinking) and req.thinking.get("type") in ("enabled", "adaptive")


def shows_thinking(req: s.PromptFields) -> bool:
    """False with ``display: "omitted"``: blocks are sent without their text."""
    return not (req.thinking and req.thinking.get("display") == "omitted")


def signature(thinking: str) -> str:
    """The opaque signature of a thinking block with this text."""
    return hashlib.sha256(b"llmkit-thinking\0" + thinking.encode()).hexdigest()


def block(thinking: str, shown: bool = True) -> s.ThinkingBlock:
    return s.ThinkingBlock(thinking=thinking if shown else "", signature=signature(thinking))
