"""The one streaming reply parser every family shares: thinking apart from the
answer, and calls out of the answer, in whatever syntax the family writes.

A syntax module says only where a call starts (its ``triggers``), where one
ends (``end``) and what it says (``calls``); this module does the streaming:
text arrives in pieces split anywhere (inside a marker, between the bytes of a
character's worth of text), and what is handed on is only what is certain.
Markup never reaches the caller. Whitespace next to a call or at the edges of
the thinking is layout, not something the model said, and is dropped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from llmkit.core.types import Tool, ToolCallDelta
from llmkit.engines.families.base import Parsed
from llmkit.engines.families.jsontext import settle

Call = tuple[str, dict[str, Any]]


class Syntax(Protocol):
    """How a family writes calls."""

    #: texts that open a call (a call block starts with one of them)
    triggers: tuple[str, ...]
    #: markup around a run of calls (a section's begin and end): dropped
    layout: tuple[str, ...]

    def end(self, block: str, memo: dict) -> int | None:
        """``block`` starts with a trigger: its length once its end is in it,
        else None (not ended yet). ``memo``: the syntax's own notes on this block
        between calls (where a scan may resume), empty at the block's start."""
        ...

    def calls(self, block: str, closed: bool) -> list[Call] | None:
        """The calls one block makes (``closed``: ``end`` found its end; else the
        text stopped inside it); None when it does not parse."""
        ...

    def text(self, block: str) -> str:
        """What a closed block that does not parse gives back as content."""
        ...


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def partial_suffix(text: str, marks: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that may still become one of ``marks``."""
    best = 0
    for mark in marks:
        for n in range(min(len(mark) - 1, len(text)), best, -1):
            if text.endswith(mark[:n]):
                best = n
                break
    return best


def first_of(text: str, marks: tuple[str, ...]) -> tuple[int, str]:
    """Where the first of ``marks`` starts in ``text`` (-1 when none does), and which."""
    at, which = -1, ""
    for mark in marks:
        i = text.find(mark)
        if i >= 0 and (at < 0 or i < at):
            at, which = i, mark
    return at, which


class Stream:
    """A ``ReplyParser`` over one reply. ``think``: the family's thinking markers
    (open, close), or None; ``thinking``: the reply starts inside the thinking
    (the prompt opened it); ``calls_end_thinking``: a call opened inside the
    thinking ends it (families whose calls may follow unclosed thinking);
    ``tools``: the functions offered, whose schemas type bare parameter values."""

    def __init__(
        self,
        syntax: Syntax,
        *,
        think: tuple[str, str] | None = None,
        thinking: bool = False,
        calls_end_thinking: bool = False,
        max_calls: int | None = None,
        new_id: Callable[[], str] = new_call_id,
        tools: tuple[Tool, ...] = (),
    ) -> None:
        self._syntax = syntax
        self._open, self._close = think or ("", "")
        self._marks = syntax.triggers + syntax.layout
        self._calls_end_thinking = calls_end_thinking
        self._book = CallBook(max_calls, new_id, tools)
        self._buf = ""
        self._start = bool(self._open) and not thinking  # a thinking may still open
        self._edge = True  # whitespace starting the next text is layout
        self._in_call = False
        self._gap = ""  # whitespace before a call: layout, unless it is no call
        self._memo: dict = {}
        self.thinking = thinking

    @property
    def calls(self) -> int:
        return self._book.count

    @property
    def done(self) -> bool:
        return self._book.done

    def push(self, text: str) -> Parsed:
        if self.done:
            return Parsed()
        self._buf += text
        out = Out()
        while not self.done and self._step(out):
            pass
        return out.parsed()

    def flush(self) -> Parsed:
        out = Out()
        if self.done:
            self._buf = ""
            return out.parsed()
        rest, self._buf = self._buf, ""
        if self.thinking:
            self.thinking = False
            out.reasoning.append(self._lead(rest).rstrip())
        elif self._in_call:
            self._in_call = False
            calls = self._syntax.calls(rest, False)
            if calls:  # an unclosed call that parses (the stop token ended it); else cut: gone
                out.calls += self._book.hand_on(calls)
        elif not self.calls:  # after calls only layout (or a marker's start) is held back
            out.content.append(self._lead(rest))
        return out.parsed()

    def _lead(self, text: str) -> str:
        if self._edge:
            text = text.lstrip()
            self._edge = not text
        return text

    def _step(self, out: Out) -> bool:
        """One move through the buffer; False when it must wait for more text."""
        buf = self._buf
        if self._start:
            head = buf.lstrip()
            if head.startswith(self._open):
                self._start, self.thinking, self._edge = False, True, True
                self._buf = head[len(self._open) :]
                return True
            if self._open.startswith(head):
                return False  # may still be the opening marker
            self._start = False
        if self.thinking:
            return self._think(out)
        if self._in_call:
            n = self._syntax.end(buf, self._memo)
            if n is None:
                return False
            block, self._buf = buf[:n], buf[n:]
            self._in_call = False
            calls = self._syntax.calls(block, True)
            if calls is None:  # not a call after all: what it said is content
                out.content.append(self._gap + self._syntax.text(block))
                self._edge = False
            else:
                out.calls += self._book.hand_on(calls)
                self._edge = True
            return True
        at, mark = first_of(buf, self._marks)
        if at >= 0:
            before = self._lead(buf[:at])
            out.content.append(before.rstrip())
            self._gap = before[len(before.rstrip()) :]
            if mark in self._syntax.layout:
                self._buf, self._edge = buf[at + len(mark) :], True
            else:
                self._buf, self._in_call, self._memo = buf[at:], True, {}
            return True
        # Hold back what may still become a marker, and trailing whitespace (it
        # goes if a call follows).
        keep = partial_suffix(buf, self._marks)
        ready = buf[: len(buf) - keep]
        body = ready.rstrip()
        if body:
            out.content.append(self._lead(body))
        self._buf = buf[len(body) :]
        return False

    def _think(self, out: Out) -> bool:
        buf = self._buf
        ends = (self._close, *(self._marks if self._calls_end_thinking else ()))
        at, mark = first_of(buf, ends)
        if at >= 0:
            out.reasoning.append(self._lead(buf[:at]).rstrip())
            self.thinking, self._edge = False, True
            self._buf = buf[at + len(self._close) :] if mark == self._close else buf[at:]
            return True
        keep = partial_suffix(buf, ends)
        body = buf[: len(buf) - keep].rstrip()
        if body:
            out.reasoning.append(self._lead(body))
        self._buf = buf[len(body) :]
        return False


class CallBook:
    """The calls of one reply so far. ``done`` turns true when the reply has said
    all it usefully can: a call past ``max_calls`` (``parallel_tool_calls``
    false: one), or a call repeated word for word, which small models do until
    they run out of tokens. Neither is handed on; the caller ends the reply."""

    def __init__(
        self,
        max_calls: int | None,
        new_id: Callable[[], str] = new_call_id,
        tools: tuple[Tool, ...] = (),
    ) -> None:
        self._max = max_calls
        self._new_id = new_id
        self._props = {t.name: _properties(t) for t in tools}
        self._seen: set[tuple[str, str]] = set()
        self.count = 0
        self.done = False

    def hand_on(self, calls: list[Call]) -> list[ToolCallDelta]:
        """The deltas of ``calls`` (id and name, then the arguments as JSON)."""
        out: list[ToolCallDelta] = []
        for name, args in calls:
            args = settle(args, self._props.get(name))
            key = (name, json.dumps(args, ensure_ascii=False))
            full = self._max is not None and self.count >= self._max
            if self.done or full or key in self._seen:
                self.done = True
                break
            self._seen.add(key)
            out += [
                ToolCallDelta(self.count, id=self._new_id(), name=name),
                ToolCallDelta(self.count, arguments=key[1]),
            ]
            self.count += 1
        return out


def _properties(tool: Tool) -> dict[str, Any]:
    schema = json.loads(tool.parameters_json)
    props = schema.get("properties") if isinstance(schema, dict) else None
    return props if isinstance(props, dict) else {}


class Out:
    """What one push or flush hands on, gathered."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[ToolCallDelta] = []

    def parsed(self) -> Parsed:
        return Parsed("".join(self.content), "".join(self.reasoning), tuple(self.calls))
