"""Memory strategies: which part of a stored conversation is sent to the model.

Pure functions from a history (plus a token budget) to the messages to send; no
I/O, so every rule is tested with tables. The strategies, chosen per conversation:

- ``buffer``: the whole history;
- ``window:N``: the last N exchanges before the new user message;
- ``tokens``: as much recent history as fits the budget;
- ``summary`` / ``summary:N``: the N most recent exchanges verbatim (default 4),
  older ones folded into a running summary the model writes (``plan_summary``
  says what to fold, ``summary_prompt`` builds the request that folds it).

Whatever the strategy, when a ``budget`` is given (the model's context length
minus the tokens kept for the reply, computed by the caller) the oldest
exchanges are dropped until the request fits, so a long conversation never gets
a context-length error from the server. The system prompt is always sent first,
and the newest user message always last. A reasoning model's earlier thinking is
not part of the history ``Chat`` hands these (it sends the answers only, unless
asked to send the thinking back), so the history is fitted by its answers.

An *exchange* is a user message and the replies that follow it. History is cut
only between exchanges, so it never starts with an assistant message answering
a question the model no longer sees.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from llmkit.core.types import Message
from llmkit.errors import InvalidRequestError

Kind = Literal["buffer", "window", "tokens", "summary"]
CountTokens = Callable[[list[Message]], int]

DEFAULT_SUMMARY_KEEP = 4
_FORMS = "'buffer', 'window:N', 'tokens', 'summary' or 'summary:N' (N a whole number >= 1)"


@dataclass(frozen=True)
class Strategy:
    kind: Kind
    # exchanges kept verbatim: window's N, summary's N; None for buffer and tokens
    n: int | None = None

    def __post_init__(self) -> None:
        counted = self.kind in ("window", "summary")
        if self.kind not in ("buffer", "window", "tokens", "summary") or (
            (self.n is not None and self.n >= 1) != counted
        ):
            raise ValueError(f"not a memory strategy: {self!r}")

    def __str__(self) -> str:
        if self.kind == "window" or (self.kind == "summary" and self.n != DEFAULT_SUMMARY_KEEP):
            return f"{self.kind}:{self.n}"
        return self.kind


def parse_strategy(text: str) -> Strategy:
    """``"window:8"`` -> ``Strategy("window", 8)``; ``str()`` turns it back."""
    m = re.fullmatch(r"\s*(buffer|window|tokens|summary)\s*(?::\s*(\d+)\s*)?", text.lower())
    n = int(m.group(2)) if m and m.group(2) else None
    kind = m.group(1) if m else None
    if (
        kind is None
        or (n is not None and (n < 1 or kind in ("buffer", "tokens")))
        or (kind == "window" and n is None)
    ):
        raise InvalidRequestError(
            f"Unknown memory strategy '{text}'. Use {_FORMS}.", param="memory"
        )
    if kind == "summary" and n is None:
        n = DEFAULT_SUMMARY_KEEP
    return Strategy(kind, n)  # type: ignore[arg-type]


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A deliberately high token count, for servers that can't count for us.

    One token per 3 bytes of UTF-8, plus 4 per message for the chat template's
    role markers, plus 3 for the reply's opening. English BPE vocabularies average
    about 4 characters a token, and text in other scripts takes 2-3 UTF-8 bytes a
    character, so bytes/3 over-counts ordinary text: with it the history is cut a bit
    early rather than the server refusing the request.
    """
    # Thinking counts only where it is sent (``Chat``'s ``resend_reasoning``):
    # by default history is the answers alone.
    return 3 + sum(4 + math.ceil(len((m.content + m.reasoning).encode()) / 3) for m in messages)


def exchanges(history: Sequence[Message]) -> list[tuple[int, int]]:
    """``(start, end)`` index ranges of ``history``'s exchanges, oldest first.

    Each starts at a user message; messages before the first user message
    (orphan replies) belong to no exchange and are never sent.
    """
    starts = [i for i, m in enumerate(history) if m.role == "user"]
    return list(zip(starts, [*starts[1:], len(history)], strict=True))


def _check(history: Sequence[Message]) -> list[tuple[int, int]]:
    # The new exchange may go on past its user message while a tool loop runs (the
    # model's calls, their results): it is sent whole, as the new message is.
    last = history[-1] if history else None
    under_way = last is not None and (last.role == "tool" or bool(last.tool_calls))
    if last is None or (last.role != "user" and not under_way):
        raise ValueError("history must end with the new user message")
    return exchanges(history)


def _with_summary(system: str | None, summary: str | None) -> Message | None:
    # The summary joins the system message rather than being a second system
    # message: many chat templates reject a system message anywhere but first.
    if summary:
        note = f"Summary of the earlier conversation:\n{summary}"
        return Message("system", f"{system}\n\n{note}" if system else note)
    return Message("system", system) if system else None


def _largest(fits: Callable[[int], bool], n: int, guess: int) -> int | None:
    """The largest ``k`` in ``0..n`` with ``fits(k)`` (true up to some k, then false),
    or None when not even ``fits(0)``.

    Gallops from ``guess`` (what the estimate says fits), doubling its steps, then
    bisects: about 2*log2(distance from the guess) calls, and every probe is near
    the answer's size, so the count never covers a whole 200-turn history just to
    learn that it doesn't fit (the caller's count may be an HTTP round trip).
    """
    k = min(max(guess, 0), n)
    step = 1
    if fits(k):
        lo = k
        while True:
            if lo == n:
                return n
            k = min(n, lo + step)
            if not fits(k):
                hi = k
                break
            lo, step = k, step * 2
    else:
        hi = k
        while True:
            if hi == 0:
                return None
            k = max(0, hi - step)
            if fits(k):
                lo = k
                break
            hi, step = k, step * 2
    while hi - lo > 1:  # fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _guess(fixed: int, sizes: Sequence[int], budget: int) -> int:
    """How many of ``sizes`` (estimated tokens, in the order they are added) fit."""
    k = 0
    for size in sizes:
        fixed += size
        if fixed > budget:
            break
        k += 1
    return k


def _fit(
    head: list[Message],
    past: list[list[Message]],
    new: list[Message],
    budget: int,
    count: CountTokens,
) -> list[Message] | None:
    """``head`` + as many of the newest exchanges in ``past`` as fit + ``new``,
    counted whole by ``count``; None when not even ``head + new`` fits."""

    def build(k: int) -> list[Message]:
        return head + [m for ex in past[len(past) - k :] for m in ex] + new

    guess = _guess(
        estimate_tokens(head + new), [estimate_tokens(ex) - 3 for ex in past[::-1]], budget
    )
    k = _largest(lambda k: count(build(k)) <= budget, len(past), guess)
    return None if k is None else build(k)


def select_messages(
    strategy: Strategy,
    *,
    system: str | None,
    history: Sequence[Message],
    summary: str | None = None,
    summarized: int | None = None,
    budget: int | None = None,
    count_tokens: CountTokens | None = None,
) -> list[Message]:
    """The messages to send for the newest user message, ``history[-1]``.

    ``history`` holds the conversation's user/assistant turns, oldest first,
    without the system prompt. For ``summary``, ``summary`` is the running
    summary and ``summarized`` how many leading history messages it covers (the
    ``end`` of the last ``SummaryPlan`` applied); None means "everything but the
    N most recent exchanges", i.e. the caller folded as ``plan_summary`` said.
    Messages the summary does not cover yet are sent verbatim, budget allowing.

    With ``budget``, whole exchanges are dropped oldest first until the request,
    counted with ``count_tokens`` (the server's tokenizer over the whole list) or
    else ``estimate_tokens``, is at most ``budget``. If even the system prompt
    (then without the summary) and the new message don't fit, raises
    ``InvalidRequestError``. ``tokens`` needs a budget; the others without one
    send everything they select.
    """
    spans = _check(history)
    past = [list(history[a:b]) for a, b in spans[:-1]]
    new = list(history[spans[-1][0] :])
    heads = [_with_summary(system, None)]
    if strategy.kind == "window":
        past = past[-strategy.n :]
    elif strategy.kind == "summary" and summary:
        if summarized is None:
            past = past[-strategy.n :]
        else:
            past = [list(history[a:b]) for a, b in spans[:-1] if a >= summarized]
        heads.insert(0, _with_summary(system, summary))
    elif strategy.kind == "tokens" and budget is None:
        raise ValueError("the 'tokens' strategy needs a budget: context length - reply budget")

    if budget is None:
        head = heads[0]
        return ([head] if head else []) + [m for ex in past for m in ex] + new
    count = count_tokens or estimate_tokens
    for head in heads:
        chosen = _fit([head] if head else [], past, new, budget, count)
        if chosen is not None:
            return chosen
    raise InvalidRequestError(
        f"The system prompt and the new message alone take "
        f"{count([*([heads[-1]] if heads[-1] else []), *new])} tokens, more than the "
        f"{budget} this model's context leaves for them after the reply's share. "
        "Shorten the message or the system prompt, or reserve fewer tokens for the reply.",
        param="messages",
    )


@dataclass(frozen=True)
class SummaryPlan:
    """Fold ``messages`` (= ``history[start:end]``) into the running summary.

    Once the model has written the new summary, store it as covering
    ``history[:end]`` (with the store: ``set_summary(name, text, entries[end - 1].id)``).
    """

    start: int
    end: int
    messages: tuple[Message, ...]


def plan_summary(
    strategy: Strategy,
    history: Sequence[Message],
    *,
    summarized: int = 0,
    previous_summary: str | None = None,
    budget: int | None = None,
    count_tokens: CountTokens | None = None,
) -> SummaryPlan | None:
    """What to fold into the summary before sending ``history[-1]``, or None.

    ``history`` ends with the new user message (as for ``select_messages``) and
    its first ``summarized`` messages are already in ``previous_summary``. Folds
    whole exchanges older than the ``strategy.n`` most recent ones. With a
    ``budget`` (for the summarising request: context - summary's reply budget)
    it folds only as many as ``summary_prompt`` fits in it, so a conversation
    switched to ``summary`` late is folded over several calls: call again with
    the new ``summarized`` until this returns None. A single exchange too long
    to fit on its own is folded with its messages shortened.
    """
    if strategy.kind != "summary":
        return None
    spans = _check(history)
    keep = strategy.n or DEFAULT_SUMMARY_KEEP
    old = [(a, b) for a, b in spans[: max(0, len(spans) - 1 - keep)] if b > summarized]
    if not old:
        return None
    start = max(old[0][0], summarized)

    def plan(k: int) -> SummaryPlan:
        end = old[k - 1][1]
        return SummaryPlan(start, end, tuple(history[start:end]))

    if budget is None:
        return plan(len(old))
    count = count_tokens or estimate_tokens

    def fits(p: SummaryPlan) -> bool:
        return count(summary_prompt(previous_summary, p.messages)) <= budget

    sizes = [estimate_tokens(history[max(a, start) : b]) - 3 for a, b in old]
    guess = _guess(estimate_tokens(summary_prompt(previous_summary, [])), sizes, budget)
    k = _largest(lambda k: k == 0 or fits(plan(k)), len(old), guess)
    if k:
        return plan(k)
    # One exchange too long for the summariser's context: fold a shortened copy.
    first = plan(1)
    limit = max(len(m.content) for m in first.messages)
    while limit > 16:
        limit //= 2
        short = tuple(_shorten(m, limit) for m in first.messages)
        if fits(SummaryPlan(first.start, first.end, short)):
            return SummaryPlan(first.start, first.end, short)
    raise InvalidRequestError(
        "The model's context is too small to summarise even one exchange of this "
        "conversation; use another memory strategy or reserve fewer tokens for the reply.",
        param="memory",
    )


def _shorten(m: Message, limit: int) -> Message:
    if len(m.content) <= limit:
        return m
    half = limit // 2
    return Message(m.role, f"{m.content[:half]} […] {m.content[-half:]}")


_SUMMARISER = (
    "You keep a running summary of a conversation between a user and an assistant. "
    "Extend the current summary with the new lines of conversation and reply with the "
    "new summary only: a few short paragraphs keeping names, facts, numbers, decisions, "
    "open questions and what the user wants, written in the third person."
)


def summary_prompt(previous_summary: str | None, messages: Sequence[Message]) -> list[Message]:
    """The request that asks the model for the new running summary.

    Its reply replaces ``previous_summary``; the transcript is quoted as text in
    one user message, so the model summarises it rather than continuing it.
    """
    lines = "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in messages)
    return [
        Message("system", _SUMMARISER),
        Message(
            "user",
            f"Current summary:\n{previous_summary or '(none yet)'}\n\n"
            f"New lines of conversation:\n{lines}\n\nNew summary:",
        ),
    ]
