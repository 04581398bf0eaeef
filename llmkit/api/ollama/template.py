"""Ollama's ``template`` override on ``/api/generate``: a Go template over
``.System``, ``.Prompt`` and ``.Response``.

We translate the subset people write in those overrides (the three fields,
``if``/``else if``/``else``/``end``, ``{{-`` and ``-}}`` trimming) into Jinja and
render it sandboxed. Anything else (``range .Messages``, functions, variables)
is refused with a clear error rather than rendered wrong.
"""

from __future__ import annotations

import re

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmkit.errors import InvalidRequestError

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
_FIELD = re.compile(r"^\.(System|Prompt|Response)$")
_IF = re.compile(r"^(if|else if)\s+\.(System|Prompt|Response)$")
_ENV = ImmutableSandboxedEnvironment(keep_trailing_newline=True)


def render_go_template(template: str, *, system: str, prompt: str) -> str:
    """The prompt text: the template rendered up to ``{{ .Response }}``, where the
    model's reply will go."""
    literals: list[str] = []  # literals[i] precedes actions[i]
    actions: list[str] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        pos = m.end()
        # Go's "{{-" and "-}}" eat the whitespace beside the action.
        text = text.lstrip() if trim_next else text
        literals.append(text.rstrip() if m.group(1) else text)
        trim_next = bool(m.group(3))
        body = m.group(2)
        if body == ".Response":
            actions.append("")
            break
        actions.append(_translate(body))
    else:
        tail = template[pos:]
        literals.append(tail.lstrip() if trim_next else tail)
    source = "".join(_literal(t) + a for t, a in zip(literals, [*actions, ""], strict=False))
    try:
        return _ENV.from_string(source).render(system=system, prompt=prompt)
    except TemplateError as e:
        raise InvalidRequestError(f"template: {e}", param="template") from e


def _translate(body: str) -> str:
    if _FIELD.match(body):
        return "{{ " + body[1:].lower() + " }}"
    if ifm := _IF.match(body):
        tag = "if" if ifm.group(1) == "if" else "elif"
        return "{% " + tag + " " + ifm.group(2).lower() + " %}"
    if body in ("else", "end"):
        return "{% else %}" if body == "else" else "{% endif %}"
    raise InvalidRequestError(
        f"template: '{{{{ {body} }}}}' is not supported; llmkit understands "
        ".System, .Prompt, .Response and if/else/end.",
        param="template",
    )


def _literal(text: str) -> str:
    # Text between actions may hold Jinja syntax of its own; keep it verbatim.
    return "{% raw %}" + text + "{% endraw %}" if text else ""
