"""What a model family is to the rest of llmkit: how its chat template switches
thinking on and off, how its replies mark thinking and tool calls, and the
grammar that makes it write a call in its own syntax.

The engines ask only this (``Family``, ``ReplyParser``); the families themselves
are data in ``table`` and the syntaxes they share live one to a module here.
Engine-neutral: text in, text out. The one grammar format is GBNF (llama.cpp's,
also what vLLM's and llama-server's structured output take).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from llmkit.core.types import Effort, Tool, ToolCallDelta


@dataclass(frozen=True)
class Parsed:
    """What a piece of reply text turned out to be, once certain."""

    content: str = ""
    reasoning: str = ""
    calls: tuple[ToolCallDelta, ...] = ()

    def __add__(self, other: Parsed) -> Parsed:
        return Parsed(
            self.content + other.content,
            self.reasoning + other.reasoning,
            self.calls + other.calls,
        )


class ReplyParser(Protocol):
    """Splits a reply streamed in pieces (split anywhere, even inside a marker or a
    character's worth of text) into content, thinking and calls. Markup never
    reaches the caller; a call is handed on whole (id and name, then arguments)
    once it is known to parse."""

    #: calls handed on so far
    calls: int
    #: inside the thinking now (a budget that runs out closes it: ``Family.close_thinking``)
    thinking: bool
    #: the reply has said all it usefully can (a call past ``max_calls``, a call
    #: repeated word for word): the caller ends the generation here
    done: bool

    def push(self, text: str) -> Parsed: ...

    def flush(self) -> Parsed:
        """The text has ended: what is held back is handed on. Unclosed thinking is
        reasoning; a malformed call is content; an unclosed call that does not
        parse (cut by max_tokens) is dropped."""
        ...


class Family(Protocol):
    #: the table's name for it: "qwen3", "deepseek-r1", "gpt-oss", "hermes"...
    name: str
    #: it can think (Ollama's "thinking" capability)
    thinks: bool
    #: thinking can be switched off (Qwen3's ``enable_thinking``, a no-think prefill)
    thinking_optional: bool
    #: the text the engine writes to end thinking when a budget is spent
    close_thinking: str
    #: the text that opens the thinking ("" where there is none to write): the
    #: engine writes it where a grammar must hold the whole answer of a family
    #: that always thinks, so the answer comes after a thinking that surely came
    open_thinking: str

    def template_variables(self, think: bool | None, effort: Effort | None) -> dict[str, Any]:
        """Extra variables for the chat template (``enable_thinking``,
        ``reasoning_effort``...) that switch thinking as asked."""
        ...

    def opens_thinking(self, prompt: str) -> bool:
        """The rendered prompt leaves the reply inside the thinking (R1-distill's
        generation prompt ends in ``<think>``): the reply starts as reasoning."""
        ...

    def parser(
        self, *, thinking: bool, max_calls: int | None, tools: tuple[Tool, ...] = ()
    ) -> ReplyParser:
        """A parser for one reply; ``thinking``: it starts inside the thinking.
        ``max_calls``: the most calls handed on (None: the family's own limit);
        0: no tools were offered, so calls are not looked for at all: call markup
        the model writes anyway stays in the content as written, and only the
        thinking is split out (the engines parse every chat reply this way).
        ``tools``: the functions offered (their schemas type the values of
        XML-style parameters; without them a value is JSON when it parses)."""
        ...

    def call_triggers(self) -> tuple[str, ...]:
        """The texts that open a call in a free ("auto") reply: a lazy grammar
        takes over at the first."""
        ...

    def call_grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        """GBNF whose ``root`` is one call (of ``name``, or of any of ``tools``) in
        this family's syntax, arguments held to the function's schema; with
        ``parallel``, one or more, and the model may stop after any."""
        ...
