"""The size of a request, bounded before any work is done on it.

Every dialect's request model says what it carries (``sizes()``: how many
choices, messages, stop strings, tools, inputs, and which JSON schemas); the
route hands that to ``check`` as its first step, before a model is looked up or
a single core request is built, so an absurd value (``n`` of a billion, a
100,000-value ``enum``) costs a 400 and nothing else. Each 400 names the limit
and the ``llmkit serve`` flag that sets it.

Pydantic models cannot see the server's settings, so the configurable limits
live here and the schemas keep only fixed caps (``logit_bias`` entries).

A JSON schema is measured without recursion (``measure``): its nesting depth,
how many objects and arrays (subschemas) it holds, and how many alternatives it
offers at one place (``enum`` and ``const`` values, ``anyOf`` and ``oneOf``
branches, ``|`` in a ``pattern``). The last is what makes constrained decoding
slow: llama.cpp checks every live alternative against the whole vocabulary at
each token, so 50,000 of them cost seconds a token for every sequence in the
batch. OpenAI bounds its structured outputs the same way (properties, nesting,
enum values).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request

from llmkit.errors import InvalidRequestError

# Fixed caps, for what no one needs more of (and OpenAI takes no more of).
MAX_LOGIT_BIAS = 1024  # entries: each is one token's bias, checked token by token


class LimitSettings(Protocol):
    """The serve settings this module reads (``ServeSettings`` has them all)."""

    max_n: int
    max_messages: int
    max_stop: int
    max_stop_length: int
    max_tools: int
    max_inputs: int
    max_schema_size: int
    max_schema_depth: int
    max_schema_enum: int
    max_images: int


@dataclass(frozen=True)
class Sizes:
    """What one request asks for, counted from its wire model. Each count goes
    with the request field (``param``) a 400 names."""

    n: int = 1
    n_param: str = "n"
    messages: int = 0
    messages_param: str = "messages"
    stop: Sequence[str] = ()
    stop_param: str = "stop"
    tools: int = 0
    tools_param: str = "tools"
    inputs: int = 0
    inputs_param: str = "input"
    images: int = 0  # all the request's messages together
    images_param: str = "messages"
    # (param, the schemas counted together): a request's tools make one grammar.
    schemas: Sequence[tuple[str, Sequence[Any]]] = field(default_factory=tuple)


def stops(stop: str | Sequence[str] | None) -> Sequence[str]:
    """A ``stop`` field (one string or a list) as a list."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else stop


def check(request: Request, sizes: Sizes) -> None:
    """A 400 for the first size over this server's limits."""
    check_sizes(request.app.state.settings, sizes)


def check_sizes(limits: LimitSettings, sizes: Sizes) -> None:
    """``check`` without the request: the limits given."""
    if sizes.n > limits.max_n:
        raise InvalidRequestError(
            f"{sizes.n_param} is {sizes.n}; this server generates at most {limits.max_n} "
            "choices a request (--max-n).",
            param=sizes.n_param,
        )
    m = sizes.messages_param
    _at_most(sizes.messages, limits.max_messages, m, "messages", "--max-messages")
    _at_most(len(sizes.stop), limits.max_stop, sizes.stop_param, "stop strings", "--max-stop")
    for s in sizes.stop:
        if isinstance(s, str) and len(s) > limits.max_stop_length:
            raise InvalidRequestError(
                f"A stop string of {len(s)} characters is too long; this server takes at most "
                f"{limits.max_stop_length} (--max-stop-length).",
                param=sizes.stop_param,
            )
    _at_most(sizes.tools, limits.max_tools, sizes.tools_param, "tools", "--max-tools")
    _at_most(sizes.inputs, limits.max_inputs, sizes.inputs_param, "inputs", "--max-inputs")
    _at_most(sizes.images, limits.max_images, sizes.images_param, "images", "--max-images")
    for param, schemas in sizes.schemas:
        check_schemas(limits, [s for s in schemas if s is not None], param)


def _at_most(count: int, limit: int, param: str, what: str, flag: str) -> None:
    if count > limit:
        raise InvalidRequestError(
            f"{param} holds {count} {what}; this server takes at most {limit} a request ({flag}).",
            param=param,
        )


@dataclass
class SchemaSize:
    """A JSON schema's measures (several schemas' together, with ``depth`` the deepest)."""

    depth: int = 0  # JSON nesting: objects and arrays inside one another
    objects: int = 0  # JSON objects and arrays: subschemas, properties maps, lists
    alternatives: int = 0  # enum/const values, anyOf/oneOf branches, pattern '|'s


def measure(schemas: Iterable[Any], stop_at: int | None = None) -> SchemaSize:
    """The size of ``schemas``, walked with a stack (a deep one cannot overflow
    Python's); gives up counting once ``objects`` passes ``stop_at``."""
    size = SchemaSize()
    todo: list[tuple[Any, int]] = [(s, 1) for s in schemas if isinstance(s, dict | list)]
    while todo:
        node, depth = todo.pop()
        size.objects += 1
        size.depth = max(size.depth, depth)
        if stop_at is not None and size.objects > stop_at:
            break
        if isinstance(node, dict):
            size.alternatives += _alternatives(node)
            values: Iterable[Any] = node.values()
        else:
            values = node
        todo.extend((v, depth + 1) for v in values if isinstance(v, dict | list))
    return size


def _alternatives(node: dict[str, Any]) -> int:
    n = 0
    enum = node.get("enum")
    if isinstance(enum, list):
        n += len(enum)
    if "const" in node:
        n += 1
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            n += len(node[key])
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        n += pattern.count("|")
    return n


def check_schemas(limits: LimitSettings, schemas: Sequence[Any], param: str) -> None:
    """A 400 naming ``param`` when ``schemas`` (taken together) are too deep,
    too big, or offer too many alternatives."""
    if not schemas:
        return
    size = measure(schemas, stop_at=limits.max_schema_size)
    one = len(schemas) == 1
    what = f"The JSON schema of {param}" if one else f"The JSON schemas of {param}, together,"
    if size.objects > limits.max_schema_size:
        raise InvalidRequestError(
            f"{what} {'holds' if one else 'hold'} more than {limits.max_schema_size} JSON "
            f"objects and arrays (subschemas, lists); this server takes at most "
            f"{limits.max_schema_size} (--max-schema-size).",
            param=param,
        )
    if size.depth > limits.max_schema_depth:
        raise InvalidRequestError(
            f"{what} {'nests' if one else 'nest'} {size.depth} levels deep; this server takes "
            f"at most {limits.max_schema_depth} (--max-schema-depth).",
            param=param,
        )
    if size.alternatives > limits.max_schema_enum:
        raise InvalidRequestError(
            f"{what} {'offers' if one else 'offer'} {size.alternatives} alternatives (enum and "
            f"const values, anyOf and oneOf branches, '|' in patterns); this server takes at "
            f"most {limits.max_schema_enum} (--max-schema-enum).",
            param=param,
        )
