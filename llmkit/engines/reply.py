"""A chat reply as the local engines' decode thread reads it: the model family's
parser splitting the text into answer, thinking and calls, the thinking counted
in tokens, and the thinking budget that has the engine close it.

The parser runs on the decode thread, token by token, rather than on the event
loop after it: the thread then knows at each token whether the reply is
thinking, so a spent budget is closed at exactly that token, a grammar that
holds only the answer starts exactly where the thinking ends, and a reply that
has said all it usefully can (its one call made) ends at that token, with usage
counting only what was generated.

What a budget is, where the request names none: its ``effort`` level, for a
family whose template takes no level of its own (``EFFORT_BUDGET``); then the
served model's default (``--reasoning-budget``, filled in by the registry).
"""

from __future__ import annotations

from collections.abc import Sequence

from llmkit.core.types import Effort, GenerateRequest
from llmkit.engines.families.base import Family, Parsed, ReplyParser

#: Thinking tokens an effort level allows, for a family whose chat template takes
#: no effort level itself (gpt-oss's takes ``reasoning_effort``: it gets the level,
#: not a budget). None: no limit but ``max_tokens``.
EFFORT_BUDGET: dict[Effort, int | None] = {
    "low": 512,
    "medium": 2048,
    "high": None,
}


def takes_effort(family: Family) -> bool:
    """Does the family's template take an effort level (its variables differ by level)?"""
    seen = {repr(sorted(family.template_variables(True, e).items())) for e in EFFORT_BUDGET}
    return len(seen) > 1


def thinking_budget(req: GenerateRequest, family: Family) -> int | None:
    """The most tokens the reply's thinking may take: the request's own budget (a
    negative one: no limit), else its effort level's where the template takes no
    level; None: no limit."""
    if req.reasoning_budget is not None:
        return req.reasoning_budget if req.reasoning_budget >= 0 else None
    if req.effort is not None and not takes_effort(family):
        return EFFORT_BUDGET[req.effort]
    return None


class Reply:
    """One chat reply on the decode thread. ``push`` each token's text (after stop
    strings are cut) in order; ``finish`` once at the end.

    Tokens counted as thinking (``reasoning_tokens``): those after which the
    parser is still inside the thinking; so the token that closes it is not, nor
    are the ones the engine writes itself to close it (``forced``).
    """

    def __init__(
        self,
        parser: ReplyParser,
        *,
        one_call: bool = False,
        budget: int | None = None,
        close: Sequence[int] = (),
        open_first: Sequence[int] = (),
    ) -> None:
        """``one_call``: the reply ends with its first call (a named tool_choice, or
        parallel calls off); ``budget``: thinking tokens before the engine writes
        ``close`` (the family's ``close_thinking``, tokenized) into the reply;
        ``open_first``: tokens the engine writes first (the family's
        ``open_thinking``), so a grammar waiting for the thinking's end is sure to
        get one."""
        self.parser = parser
        self.one_call = one_call
        self.budget = budget if close else None
        self.close = tuple(close)
        self.reasoning_tokens = 0
        # The last push started the answer: ``after_thinking`` True, by ending the
        # thinking; False, with answer text or a call where no thinking came first.
        self.answer_now = False
        self.after_thinking = False
        self._answering = False
        self._thought = parser.thinking
        self._forced = False  # the budget has been spent (once: never twice)
        self._open_first = tuple(open_first)

    @property
    def thinking(self) -> bool:
        return self.parser.thinking

    @property
    def calls(self) -> int:
        return self.parser.calls

    @property
    def done(self) -> bool:
        """Nothing useful can follow: the one call allowed is made, or the parser
        says so (a call past its limit, a call repeated word for word)."""
        return self.parser.done or (self.one_call and self.parser.calls >= 1)

    def push(self, text: str, *, forced: bool = False) -> Parsed:
        """One token's text; ``forced``: written by the engine, not sampled."""
        was = self.parser.thinking
        out = self.parser.push(text) if text else Parsed()
        thinking = self.parser.thinking
        if thinking and not forced:
            self.reasoning_tokens += 1
        self._thought = self._thought or thinking
        closed = was and not thinking
        answered = closed or (not thinking and not self._thought and bool(out.content or out.calls))
        self.answer_now = answered and not self._answering
        self.after_thinking = closed
        self._answering = self._answering or answered
        return out

    def to_force(self) -> tuple[int, ...]:
        """The tokens to write now (not sample) to close the thinking: the budget is
        spent and the thinking still open; empty otherwise. Asked after each token
        (and before the first: a budget of 0, or ``open_first``)."""
        if self._open_first:
            first, self._open_first = self._open_first, ()
            return first
        if (
            self.budget is None
            or self._forced
            or not self.parser.thinking
            or self.reasoning_tokens < self.budget
        ):
            return ()
        self._forced = True
        return self.close

    def finish(self, rest: str = "") -> Parsed:
        """The text has ended (``rest``: the last of it, held back until now)."""
        out = self.parser.push(rest) if rest else Parsed()
        return out + self.parser.flush()
