"""Render chat messages into a prompt with the model's own Jinja chat template
(the one Hugging Face tokenizers and GGUF files carry), in a sandbox.

A template's ``raise_exception`` (e.g. "roles must alternate") becomes a 400 for
the caller, not a server error. Tools and tool turns go in natively when the
template knows them, in the generic format otherwise (``tool_prompt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmkit.core.tools import tools_as_json
from llmkit.core.types import Message, Tool
from llmkit.engines.tool_prompt import template_knows_tools, template_messages
from llmkit.errors import InvalidRequestError

# Used only when a model ships no template at all; ChatML is what most
# instruction-tuned GGUFs without metadata were trained on.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class _TemplateError(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateError(message)


@lru_cache(maxsize=8)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def render_chat(
    template: str,
    messages: tuple[Message, ...],
    *,
    tools: tuple[Tool, ...] = (),
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    variables: Mapping[str, Any] | None = None,
) -> str:
    """``tools``: the functions offered to the model (none: not a word about tools);
    ``variables``: more for the template (a family's thinking switch,
    ``Family.template_variables``), as ``apply_chat_template``'s extra keywords."""
    native = template_knows_tools(template)
    extra = {"tools": tools_as_json(tools)} if native and tools else {}
    try:
        return _compile(template).render(
            messages=template_messages(messages, tools, native=native),
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **{**dict(variables or {}), **extra},
        )
    except _TemplateError as e:
        raise InvalidRequestError(
            f"The model's chat template rejected the messages: {e}", param="messages"
        ) from e
    except jinja2.TemplateError as e:
        raise InvalidRequestError(
            f"The model's chat template could not render these messages: {e}", param="messages"
        ) from e
