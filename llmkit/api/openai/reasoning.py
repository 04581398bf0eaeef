"""How an OpenAI chat request switches thinking, read into core's switch.

Three spellings reach the same ``GenerateRequest.think`` / ``effort``:
OpenAI's own ``reasoning_effort`` (``none`` and ``minimal`` switch thinking
off, ``low`` to ``max`` set the effort: ``api.reasoning``), vLLM's
``chat_template_kwargs`` (``{"enable_thinking": false}``, Qwen3's switch, or
``{"thinking": ...}``, DeepSeek V3.1's and GLM's), and llmkit's ``think``
(true or false, as Ollama's). Two that disagree are a 400: neither can be
taken over the other without surprising someone.

An assistant turn sent back with its thinking (``reasoning_content``, the name
DeepSeek's API and vLLM answer with, or ``reasoning``, OpenRouter's and
vLLM's newer one) keeps it as ``Message.reasoning``: the chat template decides
whether the model sees it.
"""

from __future__ import annotations

from llmkit.api.openai import schemas as s
from llmkit.api.reasoning import OPENAI_EFFORTS, read_effort
from llmkit.core.types import Effort
from llmkit.errors import InvalidRequestError

# chat_template_kwargs keys that are a family's thinking switch.
_SWITCHES = ("enable_thinking", "thinking")


def _from_kwargs(req: s.ChatCompletionRequest) -> tuple[bool | None, str | None]:
    """The switch in ``chat_template_kwargs`` (and the key it was under)."""
    kwargs = req.chat_template_kwargs or {}
    found: tuple[bool | None, str | None] = (None, None)
    for key in _SWITCHES:
        if key not in kwargs:
            continue
        value = kwargs[key]
        param = f"chat_template_kwargs.{key}"
        if not isinstance(value, bool):
            raise InvalidRequestError(f"{param} must be true or false; got {value!r}.", param=param)
        if found[0] is not None and found[0] != value:
            raise InvalidRequestError(
                f"chat_template_kwargs sets thinking both on and off ({found[1]}, {param}).",
                param=param,
            )
        found = (value, param)
    others = sorted(set(kwargs) - set(_SWITCHES))
    if others:
        s.log.info("ignored chat_template_kwargs: %s", ", ".join(others))
    return found


def from_reasoning(req: s.ChatCompletionRequest) -> tuple[bool | None, Effort | None, str]:
    """``(think, effort, param)``: the switch, the effort, and the field that
    asked for thinking (what a refusal names)."""
    think, effort = read_effort(req.reasoning_effort, OPENAI_EFFORTS, "reasoning_effort")
    asked = [(think, "reasoning_effort")] if think is not None else []
    switch, key = _from_kwargs(req)
    if switch is not None and key is not None:
        asked.append((switch, key))
    if req.think is not None:
        asked.append((req.think, "think"))
    if len({value for value, _ in asked}) > 1:
        names = " and ".join(param for _, param in asked)
        raise InvalidRequestError(
            f"{names} disagree on whether the model thinks; send one of them.",
            param=asked[-1][1],
        )
    if not asked:
        return None, effort, "reasoning_effort"
    return asked[-1][0], effort, asked[-1][1]


def message_reasoning(m: s.ChatMessage) -> str:
    """An assistant turn's earlier thinking, under either name."""
    return m.reasoning_content or m.reasoning or ""
