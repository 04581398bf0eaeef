"""JSON inside a reply's markup: where a value ends in a stream, and a call's
arguments as the object they must be."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_OPEN = {"{": "}", "[": "]"}


# Between brackets only these matter; a string's body is skipped whole (in C).
_MARK = re.compile(r'[{}\[\]"]')
# A string's characters up to its closing quote (or the text's end, or a last
# lone backslash): where a scan can stop and resume.
_IN_STRING = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)


def find(text: str, mark: str, memo: dict, start: int = 0) -> int:
    """``text.find(mark, start)`` for a text that grows between calls: where the
    last call (same ``memo``) found nothing, the search resumes near its end."""
    key = ("find", mark, start)
    i = text.find(mark, max(start, memo.get(key, start)))
    if i < 0:
        memo[key] = max(start, len(text) - len(mark) + 1)
    return i


def json_end(text: str, start: int = 0, memo: dict | None = None) -> int | None:
    """Where the JSON object or array that starts at ``start`` (after whitespace)
    ends, or None while it may still be going on. What does not start a value
    (or closes the wrong bracket) ends at once: it is not a call. ``memo`` (the
    same dict while ``text`` grows) lets a scan resume where the last one
    stopped, so a long value streamed in pieces is not read again each time."""
    memo = {} if memo is None else memo
    if memo.get("start") != start:
        i = len(text) - len(text[start:].lstrip())
        if i == len(text):
            return None
        if text[i] not in _OPEN:
            return i
        memo.update(start=start, at=i, stack=[], in_string=False)
    stack: list[str] = memo["stack"]
    at = memo["at"]
    while True:
        if memo["in_string"]:
            at = _IN_STRING.match(text, at).end()  # type: ignore[union-attr]
            if at >= len(text) or text[at] != '"':
                memo["at"] = at  # the string goes on
                return None
            memo["in_string"], at = False, at + 1
        m = _MARK.search(text, at)
        if m is None:
            memo["at"] = len(text)
            return None
        c, at = m[0], m.end()
        if c == '"':
            memo["in_string"] = True
        elif c in _OPEN:
            stack.append(_OPEN[c])
        elif not stack or stack.pop() != c or not stack:
            return at


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


class Bare(str):
    """A parameter's value as an XML-style syntax writes it (``<parameter=x>5</parameter>``):
    text that ``settle`` types once the call is whole."""


_KIND = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
         list: "array", dict: "object"}  # fmt: skip


def settle(args: dict[str, Any], props: Mapping[str, Any] | None) -> dict[str, Any]:
    """``args`` with each bare value typed: JSON when it parses, unless the
    property's schema (``props``, the function's properties, when known) takes
    a string and not the type the JSON would give ("5123123" for a string
    stays a string; "null" for a nullable string is null)."""
    out = {}
    for key, value in args.items():
        if isinstance(value, Bare):
            value = _typed(str(value), _kinds((props or {}).get(key)))
        out[key] = value
    return out


def _typed(raw: str, kinds: set[str]) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    kind = _KIND.get(type(value), "")
    if "string" in kinds and kind not in kinds - {"string"}:
        if not (kind == "integer" and "number" in kinds):
            return raw
    return value


def _kinds(prop: Any) -> set[str]:
    """The JSON types a property's schema allows (empty: not known)."""
    if not isinstance(prop, dict):
        return set()
    kind = prop.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    if "enum" in prop or "const" in prop:
        values = prop.get("enum", [prop.get("const")])
        return {_KIND.get(type(v), "") for v in values}
    out: set[str] = set()
    for branch in (*prop.get("anyOf", ()), *prop.get("oneOf", ())):
        out |= _kinds(branch)
    return out
