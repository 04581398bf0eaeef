"""The tools a request offers, checked the same way for both dialects.

Both describe a tool alike (``{"type": "function", "function": {"name",
"description", "parameters"}}``), so the checks, and the ``param`` paths their
400s name, are shared; each dialect's ``convert`` reads its own fields into them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llmkit.core.types import Tool, ToolChoice
from llmkit.errors import InvalidRequestError

# OpenAI's rule for function names; it keeps names safe inside prompts and grammars.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def tool_from_dict(fn: dict[str, Any] | None, where: str, *, strict: bool = False) -> Tool:
    """A ``function`` object of a request (at ``where``, e.g. ``tools.0.function``)
    as a core ``Tool``, or a 400 naming what is wrong with it."""
    if not isinstance(fn, dict):
        raise InvalidRequestError(f"{where} must be an object.", param=where)
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequestError(
            f"{where}.name must be 1 to 64 letters, digits, '_', '.' or '-'; got {name!r}.",
            param=f"{where}.name",
        )
    params = fn.get("parameters")
    params = EMPTY_PARAMETERS if params is None else params
    check_schema(params, f"{where}.parameters")
    if params.get("type", "object") != "object":
        raise InvalidRequestError(
            f"{where}.parameters must describe an object (type 'object'), as the "
            "arguments of a call are one.",
            param=f"{where}.parameters",
        )
    description = fn.get("description") or ""
    return Tool(
        name=name,
        description=str(description),
        parameters_json=json.dumps(params),
        strict=bool(fn.get("strict", strict)),
    )


def check_schema(schema: Any, where: str) -> None:
    """A 400 for what is not a JSON Schema: not an object, an unknown ``type``,
    ``properties`` that are not schemas, ``required`` that is not a list of names.
    Deliberately shallow about keywords it does not know (they are allowed)."""

    def bad(why: str, at: str) -> InvalidRequestError:
        return InvalidRequestError(f"{at} is not a valid JSON Schema: {why}.", param=where)

    def walk(node: Any, at: str) -> None:
        if isinstance(node, bool):
            return  # true / false are schemas too
        if not isinstance(node, dict):
            raise bad("a schema must be an object", at)
        t = node.get("type")
        types = t if isinstance(t, list) else [t] if t is not None else []
        if any(not isinstance(x, str) or x not in _TYPES for x in types):
            raise bad(f"unknown type {t!r}", at)
        props = node.get("properties", {})
        if not isinstance(props, dict):
            raise bad("properties must be an object", at)
        for k, v in props.items():
            walk(v, f"{at}.properties.{k}")
        req = node.get("required", [])
        if not isinstance(req, list) or not all(isinstance(x, str) for x in req):
            raise bad("required must be a list of property names", at)
        if "items" in node:
            walk(node["items"], f"{at}.items")
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                subs = node[key]
                if not isinstance(subs, list):
                    raise bad(f"{key} must be a list", at)
                for i, sub in enumerate(subs):
                    walk(sub, f"{at}.{key}.{i}")
        extra = node.get("additionalProperties")
        if extra is not None:
            walk(extra, f"{at}.additionalProperties")
        for key in ("$defs", "definitions"):
            for k, v in (node.get(key) or {}).items():
                walk(v, f"{at}.{key}.{k}")

    walk(schema, where)


def check_choice(tools: tuple[Tool, ...], choice: ToolChoice, name: str | None, param: str) -> None:
    """A 400 (naming ``param``) for a choice the tools cannot meet."""
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequestError("Two tools have the same name.", param="tools")
    if choice == "required" and not tools:
        raise InvalidRequestError(
            f"{param} asks for a tool call, but the request offers no tools.", param=param
        )
    if name is not None and name not in names:
        offered = ", ".join(names) or "none"
        raise InvalidRequestError(
            f"{param} names the function '{name}', which is not among the tools ({offered}).",
            param=param,
        )
