"""JSON inside a reply's markup: where a value ends in a stream, and a call's
arguments as the object they must be."""

from __future__ import annotations

import json
from typing import Any

_OPEN = {"{": "}", "[": "]"}


def json_end(text: str, start: int = 0) -> int | None:
    """Where the JSON object or array that starts at ``start`` (after whitespace)
    ends, or None while it may still be going on. What does not start a value
    (or closes the wrong bracket) ends at once: it is not a call."""
    i = start
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    if i == len(text):
        return None
    if text[i] not in _OPEN:
        return i
    stack: list[str] = []
    in_str = esc = False
    for j in range(i, len(text)):
        c = text[j]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in _OPEN:
            stack.append(_OPEN[c])
        elif c in "]}":
            if not stack or stack.pop() != c:
                return j + 1
            if not stack:
                return j + 1
    return None


def as_args(value: Any) -> dict[str, Any] | None:
    """A call's arguments as an object: given as one, or as JSON text of one
    (what some models copy from OpenAI's wire format); None otherwise."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def load(text: str) -> Any:
    """``text`` as JSON, or None (``null`` is no call's arguments either)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def named_call(obj: Any, *, need_args: bool = False) -> tuple[str, dict[str, Any]] | None:
    """``{"name": ..., "arguments": {...}}`` as a call (``parameters``: Llama's
    word); no arguments at all are none, unless ``need_args``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    for key in ("arguments", "parameters"):
        if key in obj:
            args = as_args(obj[key])
            return None if args is None else (obj["name"], args)
    return None if need_args else (obj["name"], {})


def param_value(text: str) -> Any:
    """An XML-style parameter's value: JSON when it parses, else the text as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text
