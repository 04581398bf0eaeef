"""Ollama's ``template`` override on ``/api/generate``: a Go template over
``.System``, ``.Prompt`` and ``.Response``.

We translate the subset people write in those overrides (the three fields,
``if``/``else if``/``else``/``end``, ``{{-`` and ``-}}`` trimming) into Jinja and
render it sandboxed. Anything else (``range .Messages``, functions, variables)
is refused with a clear error rather than rendered wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmkit.errors import InvalidRequestError

_FIELD = re.compile(r"^\.(System|Prompt|Response)$")
_IF = re.compile(r"^(if|else if)\s+\.(System|Prompt|Response)$")
_ENV = ImmutableSandboxedEnvironment(keep_trailing_newline=True)
# Real overrides hold a dozen actions; compiling one costs about 0.1 ms, on the event loop.
MAX_ACTIONS = 256


def render_go_template(template: str, *, system: str, prompt: str) -> str:
    """The prompt text: the template rendered up to ``{{ .Response }}``, where the
    model's reply will go."""
    literals: list[str] = []  # literals[i] precedes actions[i]
    actions: list[str] = []
    pos, trim_next = 0, False
    for i, (start, end, left, body, right) in enumerate(_actions(template)):
        if i == MAX_ACTIONS:
            raise InvalidRequestError(
                f"template holds more than {MAX_ACTIONS} actions ({{{{ ... }}}}); "
                f"llmkit takes at most {MAX_ACTIONS}.",
                param="template",
            )
        text = template[pos:start]
        pos = end
        # Go's "{{-" and "-}}" eat the whitespace beside the action.
        text = text.lstrip() if trim_next else text
        literals.append(text.rstrip() if left else text)
        trim_next = right
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


def _actions(template: str) -> Iterator[tuple[int, int, bool, str, bool]]:
    """Each ``{{ action }}``: where it starts and ends, whether it trims on the
    left, its body, whether it trims on the right. Found with ``str.find``, in
    one pass: a pattern with a lazy ``.*?`` takes quadratic time on a template of
    unclosed ``{{``, and this runs on the event loop."""
    pos = 0
    while (start := template.find("{{", pos)) >= 0:
        end = template.find("}}", start + 2)
        if end < 0:
            return
        inner = template[start + 2 : end]
        left, right = inner.startswith("-"), inner[1 if inner.startswith("-") else 0 :]
        trim_right = right.endswith("-")
        body = (right[:-1] if trim_right else right).strip()
        yield start, end + 2, left, body, trim_right
        pos = end + 2


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
