"""gpt-oss's harmony format: the reply is messages, each a header (a channel,
maybe a recipient and a format) and a body (a call's on one line)::

    <|channel|>analysis<|message|>thinking...<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json
    <|message|>{"city": "Paris"}<|call|>
    <|start|>assistant<|channel|>final<|message|>the answer

The ``analysis`` channel is the thinking, a message to ``functions.x`` a call,
any other channel the answer. A message to a built-in tool (``to=python``,
``to=container.exec``) is neither: it is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from llmkit.core.types import Tool
from llmkit.engines.families.base import Parsed
from llmkit.engines.families.gbnf import Rules, chosen, lit, repeat
from llmkit.engines.families.jsontext import as_args
from llmkit.engines.families.stream import CallBook, Out, new_call_id, partial_suffix

START, CHANNEL, MESSAGE = "<|start|>", "<|channel|>", "<|message|>"
ENDS = ("<|end|>", "<|call|>", "<|return|>")
# What ends the thinking when a budget is spent: the answer follows.
CLOSE_THINKING = "<|end|><|start|>assistant<|channel|>final<|message|>"
# What opens it, where the engine opens the thinking for the model.
OPEN_THINKING = "<|channel|>analysis<|message|>"
_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)")
_HEADS = ("<|", "to=")
# What starts a new message's header where a body was expected.
_OPENS = (START, CHANNEL)
_TO = re.compile(r"to=([^\s<]+)")


class HarmonyParser:
    """A ``ReplyParser`` over one harmony reply."""

    def __init__(
        self, *, thinking: bool, max_calls: int | None, new_id: Callable[[], str] = new_call_id
    ) -> None:
        self._book = CallBook(max_calls, new_id)
        self._buf = ""
        self._kind: str | None = "reasoning" if thinking else None  # None: in a header
        self._name = ""  # the function a call message is to
        self._edge = True
        self._first = not thinking  # the reply may be plain text, no header at all
        self.thinking = thinking

    @property
    def calls(self) -> int:
        return self._book.count

    @property
    def done(self) -> bool:
        return self._book.done

    def push(self, text: str) -> Parsed:
        out = Out()
        if not self.done:
            self._buf += text
            while not self.done and self._step(out):
                pass
        return out.parsed()

    def flush(self) -> Parsed:
        out = Out()
        rest, self._buf = self._buf, ""
        if self.done:
            return out.parsed()
        if self._kind == "call":
            args = as_args(rest.strip())
            if args is not None:  # the reply ended at the call (<|call|> is a stop token)
                out.calls += self._book.hand_on([(self._name, args)])
        elif self._kind is None and self._first:
            out.content.append(rest.strip())
        else:
            self._text(rest.rstrip(), out)
        self.thinking = False
        return out.parsed()

    def _step(self, out: Out) -> bool:
        buf = self._buf
        if self._kind is None:
            if self._first:  # the reply's start: a header, or plain text (the answer)
                head = buf.lstrip()
                if any(p.startswith(head) for p in _HEADS):
                    return False  # may still become a header
                self._first = False
                if not head.startswith(_HEADS):
                    self._kind = "content"
                    return True
            at = buf.find(MESSAGE)
            if at < 0:
                return False
            self._open(buf[:at])
            self._buf = buf[at + len(MESSAGE) :]
            return True
        ends = [i for i in (buf.find(e) for e in (*ENDS, *_OPENS)) if i >= 0]
        if ends:
            at = min(ends)
            end = next(e for e in (*ENDS, *_OPENS) if buf.startswith(e, at))
            self._close(buf[:at], out)
            # A header met in a body ends the message without its end marker (an
            # engine's budget closes the thinking into the final channel, and a
            # grammar may then write a call's header): it is read as a header.
            rest = buf[at + len(end) :] if end in ENDS else buf[at:]
            self._buf = rest.lstrip().removeprefix(START)
            return True
        if self._kind in ("call", "drop"):
            return False
        keep = partial_suffix(buf, (*ENDS, *_OPENS))
        body = buf[: len(buf) - keep].rstrip()
        self._text(body, out)
        self._buf = buf[len(body) :]
        return False

    def _open(self, header: str) -> None:
        channels = _CHANNEL.findall(header)
        to = [t for t in _TO.findall(header) if t != "assistant"]
        self._edge = True
        if to:
            self._kind = "call" if to[-1].startswith("functions.") else "drop"
            self._name = to[-1].removeprefix("functions.")
        else:
            self._kind = "reasoning" if channels and channels[-1] == "analysis" else "content"
        self.thinking = self._kind == "reasoning"

    def _close(self, body: str, out: Out) -> None:
        if self._kind == "call":
            args = as_args(body.strip())
            if args is None:  # not a call after all: what it said is content
                out.content.append(body.strip())
            else:
                out.calls += self._book.hand_on([(self._name, args)])
        else:
            self._text(body.rstrip(), out)
        self._kind, self.thinking = None, False

    def _text(self, body: str, out: Out) -> None:
        if self._edge:
            body = body.lstrip()
            self._edge = not body
        if self._kind == "reasoning":
            out.reasoning.append(body)
        elif self._kind == "content":
            out.content.append(body)


class Harmony:
    """The harmony syntax as the family table sees it."""

    triggers = ("<|channel|>commentary to=functions.",)

    def grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        g = Rules()
        funcs = []
        for i, tool in enumerate(chosen(tools, name)):
            funcs.append(f"fn-{i}")
            head = f"{CHANNEL}commentary to=functions.{tool.name} <|constrain|>json{MESSAGE}"
            g.add(f"fn-{i} ::= {lit(head)} {g.args(tool, i)} {lit('<|call|>')}")
        turn = lit(START + "assistant")
        g.add(f"root ::= {turn}? {repeat('tool-call', turn, parallel)}")
        g.add(f"tool-call ::= {' | '.join(funcs)}")
        return g.text()


HARMONY = Harmony()
