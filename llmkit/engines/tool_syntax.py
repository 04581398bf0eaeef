"""Tool calls out of a model's text: the ``<tool_call>`` syntax (Hermes / Qwen
style) parsed from a stream into content and call deltas, for every engine that
produces plain text.

A model calls a function by writing::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

``ToolCallParser`` takes the text as it streams, in pieces split anywhere, and
gives back the content around the calls and each call as a ``ToolCallDelta``
pair (id and name, then the arguments), so the markup never reaches a client.
A call is handed on once its closing tag arrives (or the text ends): only then
is it known to parse. A closed call that does not parse is given back as text,
without the tags; an unclosed one that does not parse (cut off by max_tokens)
is dropped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from llmkit.core.types import ToolCallDelta

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def parse_call(body: str) -> tuple[str, str] | None:
    """``(name, arguments as compact JSON)`` of one call's JSON, or None. Takes
    ``parameters`` for ``arguments`` (Llama 3's word) and arguments given as a
    JSON string (what some models copy from OpenAI's wire format)."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return obj["name"], json.dumps(args, ensure_ascii=False)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that begins ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ToolCallParser:
    """Splits streamed text into content and calls. Whitespace next to a call is
    dropped (it is layout, not something the model said).

    ``done`` turns true when the reply has said all it usefully can: a call past
    ``max_calls`` (``parallel_tool_calls`` false: one), or a call repeated word
    for word, which small models do until they run out of tokens. Neither is
    handed on, and the caller should end the generation there.
    """

    def __init__(
        self, *, max_calls: int | None = None, new_id: Callable[[], str] = new_call_id
    ) -> None:
        self._buf = ""  # text not yet handed on
        self._in_call = False
        self._after_call = False  # whitespace starting the next text is layout
        self._max = max_calls
        self._new_id = new_id
        self._seen: set[tuple[str, str]] = set()
        self.calls = 0
        self.done = False

    def push(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """Add the next piece; return the content and call deltas now certain."""
        self._buf += text
        out: list[str] = []
        deltas: list[ToolCallDelta] = []
        while True:
            if self._in_call:
                end = self._buf.find(CLOSE)
                if end < 0:
                    break
                body, self._buf = self._buf[:end], self._buf[end + len(CLOSE) :]
                self._in_call = False
                out.append(self._call(body, deltas))
                continue
            start = self._buf.find(OPEN)
            if start >= 0:
                out.append(self._text(self._buf[:start].rstrip()))
                self._buf = self._buf[start + len(OPEN) :]
                self._in_call = True
                continue
            # Hold back what may still become a tag, and trailing whitespace (it
            # goes if a call follows).
            keep = _partial_suffix(self._buf, OPEN)
            ready = self._buf[: len(self._buf) - keep]
            body = ready.rstrip()
            if not body and self._after_call:
                self._buf = self._buf[len(ready) :]  # layout after a call: gone
                break
            out.append(self._text(body))
            self._buf = self._buf[len(body) :]
            break
        return "".join(out), deltas

    def flush(self) -> tuple[str, list[ToolCallDelta]]:
        """The text has ended: an unclosed call is taken as it is, the rest as content."""
        rest, self._buf = self._buf, ""
        deltas: list[ToolCallDelta] = []
        if self._in_call:
            self._in_call = False
            text = self._call(rest, deltas)
            # A call cut short (max_tokens) is no text the model meant to say.
            return ("" if not deltas and parse_call(rest) is None else text), deltas
        return ("" if self.calls else self._text(rest)), deltas

    def _text(self, text: str) -> str:
        if self._after_call:
            text = text.lstrip()
            self._after_call = not text
        return text

    def _call(self, body: str, deltas: list[ToolCallDelta]) -> str:
        self._after_call = True
        parsed = parse_call(body)
        if parsed is None:
            return body.strip()  # not a call after all: what it said, without the tags
        if parsed in self._seen or (self._max is not None and self.calls >= self._max):
            self.done = True
            return ""
        self._seen.add(parsed)
        name, args = parsed
        deltas += [
            ToolCallDelta(self.calls, id=self._new_id(), name=name),
            ToolCallDelta(self.calls, arguments=args),
        ]
        self.calls += 1
        return ""
