"""Render chat messages into a prompt with the model's own Jinja chat template
(the one Hugging Face tokenizers and GGUF files carry), in a sandbox.

The prompt is the one Hugging Face's ``apply_chat_template`` renders from the same
messages: the same Jinja settings (block trimming, ``loopcontrols``, the
``{% generation %}`` tag some templates mark assistant text with), the same
helpers (a ``tojson`` that writes JSON as ``json.dumps`` does, not Jinja's
HTML-safe one; ``raise_exception``; ``strftime_now``; a ``namespace`` that keeps
to plain names; a ``dict`` with ``fromkeys``) and the same variables (``tools``
and ``documents`` present, None when not given; the family's switches such as
``enable_thinking`` or ``reasoning_effort``). ``tests/test_chat_render.py`` holds
the two to the same text for every template llama.cpp ships.

A template's ``raise_exception`` (e.g. "roles must alternate") becomes a 400 for
the caller, not a server error. Tools and tool turns go in natively when the
template knows them, in the generic format otherwise (``tool_prompt``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.utils
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

# The variables render_chat itself sets; a family's switches may not replace them.
_RESERVED = frozenset(
    {"messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token"}
)


class _TemplateError(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Templates write tool schemas and call arguments with this: the model was
    # trained on plain JSON (``"a < b"``), not Jinja's HTML-escaped ``\u003c``.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _Dict:
    """``dict(...)`` and ``dict.fromkeys(...)`` in a template, without handing the
    sandbox the ``dict`` type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args)


class _Namespace(jinja2.utils.Namespace):
    """Jinja's ``namespace``, refusing names that start with ``_`` (the way out of
    a sandbox goes through dunder attributes)."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"a chat template may not set {name!r} on a namespace"
            )


class _Generation(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: marks assistant text for
    training masks; rendering a prompt, it is just its body."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


@lru_cache(maxsize=8)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _Dict()
    env.globals["namespace"] = _Namespace
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
    """``tools``: the functions offered to the model (none: not a word about tools).
    ``variables``: the family's template switches (``{"enable_thinking": False}``,
    ``{"reasoning_effort": "high"}``: ``Family.template_variables``)."""
    extra = dict(variables or {})
    if clash := _RESERVED & extra.keys():
        raise ValueError(f"render_chat sets {sorted(clash)} itself")
    native = template_knows_tools(template)
    turns = template_messages(messages, tools, native=native)
    # As Hugging Face passes them: always defined, None when there are none.
    offered = tools_as_json(tools) if native and tools else None
    try:
        return _compile(template).render(
            messages=turns,
            tools=offered,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except _TemplateError as e:
        raise InvalidRequestError(
            f"The model's chat template rejected the messages: {e}", param="messages"
        ) from e
    except (jinja2.TemplateError, TypeError, ValueError, LookupError) as e:
        # A template that does Python on what it was given (iterates ``tools`` when
        # there are none, adds a dict to a string, json-dumps a generator) fails so
        # for these messages, as it does under Hugging Face: the caller's 400.
        raise InvalidRequestError(
            f"The model's chat template could not render these messages: {e}", param="messages"
        ) from e
