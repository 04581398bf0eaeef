"""Memory strategies: which messages each one sends, and that none ever overflows.

Table tests use a counter of one token per message, so budgets are easy to read;
the long-conversation tests count with the bundled model's own tokenizer and chat
template, as the server would.
"""

from __future__ import annotations

import math
import random

import pytest

from llmkit.core.types import Message
from llmkit.errors import InvalidRequestError
from llmkit.memory.strategies import (
    Strategy,
    estimate_tokens,
    exchanges,
    parse_strategy,
    plan_summary,
    select_messages,
    summary_prompt,
)

SYS = Message("system", "Be brief.")


def u(i: int) -> Message:
    return Message("user", f"u{i}")


def a(i: int) -> Message:
    return Message("assistant", f"a{i}")


def talk(n: int) -> list[Message]:
    """n finished exchanges, then the new user message u{n+1}."""
    return [m for i in range(1, n + 1) for m in (u(i), a(i))] + [u(n + 1)]


def one_each(messages: list[Message]) -> int:
    return len(messages)


def names(messages: list[Message]) -> list[str]:
    return [m.content if m.role != "system" else "SYS" for m in messages]


# -- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "n", "canonical"),
    [
        ("buffer", "buffer", None, "buffer"),
        ("window:3", "window", 3, "window:3"),
        (" Window : 12 ", "window", 12, "window:12"),
        ("tokens", "tokens", None, "tokens"),
        ("summary", "summary", 4, "summary"),
        ("summary:4", "summary", 4, "summary"),
        ("summary:2", "summary", 2, "summary:2"),
    ],
)
def test_parse_strategy(text: str, kind: str, n: int | None, canonical: str) -> None:
    s = parse_strategy(text)
    assert (s.kind, s.n, str(s)) == (kind, n, canonical)
    assert parse_strategy(str(s)) == s


@pytest.mark.parametrize(
    "text", ["", "window", "window:0", "window:-1", "window:x", "buffer:3", "tokens:9", "last:3"]
)
def test_parse_strategy_errors(text: str) -> None:
    with pytest.raises(InvalidRequestError) as e:
        parse_strategy(text)
    assert "'window:N'" in e.value.message and e.value.param == "memory"


def test_strategy_checks_itself() -> None:
    with pytest.raises(ValueError):
        Strategy("window")
    with pytest.raises(ValueError):
        Strategy("buffer", 3)


# -- which messages each strategy sends --------------------------------------------------

H = talk(10)  # u1 a1 ... u10 a10 u11


@pytest.mark.parametrize(
    ("strategy", "kwargs", "expected"),
    [
        ("buffer", {}, ["SYS", *names(H)]),
        ("window:2", {}, ["SYS", "u9", "a9", "u10", "a10", "u11"]),
        ("window:1", {}, ["SYS", "u10", "a10", "u11"]),
        ("window:50", {}, ["SYS", *names(H)]),
        # no summary written yet: nothing is lost, everything is sent
        ("summary:2", {}, ["SYS", *names(H)]),
        # budgets: one token a message here
        ("buffer", {"budget": 6}, ["SYS", "u9", "a9", "u10", "a10", "u11"]),
        ("buffer", {"budget": 5}, ["SYS", "u10", "a10", "u11"]),
        ("window:1", {"budget": 3}, ["SYS", "u11"]),
        ("tokens", {"budget": 8}, ["SYS", "u8", "a8", "u9", "a9", "u10", "a10", "u11"]),
        ("tokens", {"budget": 100}, ["SYS", *names(H)]),
    ],
)
def test_selection(strategy: str, kwargs: dict, expected: list[str]) -> None:
    got = select_messages(
        parse_strategy(strategy), system=SYS.content, history=H, count_tokens=one_each, **kwargs
    )
    assert names(got) == expected


def test_summary_joins_the_system_message() -> None:
    got = select_messages(parse_strategy("summary:2"), system="Be brief.", history=H, summary="S")
    assert got[0] == Message("system", "Be brief.\n\nSummary of the earlier conversation:\nS")
    assert names(got[1:]) == ["u9", "a9", "u10", "a10", "u11"]
    # no system prompt: the summary is the system message
    got = select_messages(parse_strategy("summary:1"), system=None, history=H, summary="S")
    assert got[0] == Message("system", "Summary of the earlier conversation:\nS")
    assert names(got[1:]) == ["u10", "a10", "u11"]


def test_summary_sends_what_it_does_not_cover_yet() -> None:
    # the summary covers u1..a6 (12 messages); u7.. are sent even beyond summary:2
    got = select_messages(
        parse_strategy("summary:2"), system=None, history=H, summary="S", summarized=12
    )
    assert names(got[1:]) == ["u7", "a7", "u8", "a8", "u9", "a9", "u10", "a10", "u11"]


def test_summary_under_a_budget_trims_then_drops_the_summary() -> None:
    def count(ms: list[Message]) -> int:
        return sum(len(m.content) for m in ms)

    args = dict(system="sys", history=H, summary="x" * 20, count_tokens=count)
    s = parse_strategy("summary:2")
    full = select_messages(s, **args)
    assert names(select_messages(s, budget=count(full), **args)) == names(full)
    got = select_messages(s, budget=count(full) - 1, **args)  # one exchange goes
    assert names(got[1:]) == ["u10", "a10", "u11"] and "x" * 20 in got[0].content
    got = select_messages(s, budget=10, **args)  # no room for the summary itself
    assert got == [Message("system", "sys"), u(11)]
    with pytest.raises(InvalidRequestError) as e:
        select_messages(s, budget=5, **args)
    assert "6 tokens" in e.value.message and "5" in e.value.message


def test_system_first_and_no_orphan_assistant() -> None:
    odd = [
        Message("assistant", "orphan"),
        u(1),
        u(2),  # the reply to u1 never came
        Message("assistant", "a2 (interrupted)"),
        u(3),
        a(3),
        u(4),
    ]
    assert exchanges(odd) == [(1, 2), (2, 4), (4, 6), (6, 7)]
    for strategy in ("buffer", "window:2", "tokens", "summary:1"):
        for budget in (None, 3, 4, 5, 6, 7):
            if strategy == "tokens" and budget is None:
                continue
            got = select_messages(
                parse_strategy(strategy),
                system="S",
                history=odd,
                budget=budget,
                count_tokens=one_each,
                summary="sum",
            )
            assert got[0].role == "system" and got[1].role == "user"
            assert got[-1] == u(4)
            assert "orphan" not in names(got)


def test_bad_calls() -> None:
    with pytest.raises(ValueError, match="must end with the new user message"):
        select_messages(parse_strategy("buffer"), system=None, history=[u(1), a(1)])
    with pytest.raises(ValueError, match="needs a budget"):
        select_messages(parse_strategy("tokens"), system=None, history=[u(1)])
    with pytest.raises(InvalidRequestError, match="system prompt and the new message"):
        select_messages(
            parse_strategy("tokens"), system="S", history=[u(1)], budget=1, count_tokens=one_each
        )


# -- summary planning --------------------------------------------------------------------


def test_plan_summary_folds_what_is_older_than_n_exchanges() -> None:
    s = parse_strategy("summary:2")
    assert plan_summary(parse_strategy("buffer"), H) is None
    assert plan_summary(s, talk(2)) is None
    plan = plan_summary(s, H)
    assert (plan.start, plan.end) == (0, 16)
    assert names(list(plan.messages)) == names(H[:16])
    # already covered up to u7: fold u7..a8
    plan = plan_summary(s, H, summarized=12)
    assert (plan.start, plan.end) == (12, 16)
    assert plan_summary(s, H, summarized=16) is None
    # after folding, select_messages sends summary + the two kept exchanges
    got = select_messages(s, system=None, history=H, summary="S", summarized=plan.end)
    assert names(got[1:]) == ["u9", "a9", "u10", "a10", "u11"]


def test_plan_summary_in_chunks_that_fit_the_summariser() -> None:
    s = parse_strategy("summary:1")
    history = talk(30)
    budget = 150
    covered, summary, rounds = 0, None, 0
    while plan := plan_summary(
        s, history, summarized=covered, previous_summary=summary, budget=budget
    ):
        assert plan.start == covered and plan.end > covered
        assert estimate_tokens(summary_prompt(summary, plan.messages)) <= budget
        covered, summary, rounds = plan.end, f"summary #{rounds}", rounds + 1
    assert covered == 58 and rounds > 1  # all but the last exchange and the new message


def test_plan_summary_shortens_one_huge_exchange() -> None:
    history = [Message("user", "x" * 5000), Message("assistant", "y" * 5000), u(2), a(2), u(3)]
    plan = plan_summary(parse_strategy("summary:1"), history, budget=400)
    assert (plan.start, plan.end) == (0, 2)
    assert all(len(m.content) < 1000 and "[…]" in m.content for m in plan.messages)
    assert estimate_tokens(summary_prompt(None, plan.messages)) <= 400


def test_summary_prompt() -> None:
    msgs = summary_prompt("They met.", [u(1), a(1)])
    assert [m.role for m in msgs] == ["system", "user"]
    assert "They met." in msgs[1].content and "User: u1\n\nAssistant: a1" in msgs[1].content
    assert "(none yet)" in summary_prompt(None, [u(1)])[1].content


# -- 200 turns against a real tokenizer --------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    import llama_cpp

    from llmkit.engines.chat_template import render_chat
    from llmkit.models.bundled import bundled_model_path

    llama = llama_cpp.Llama(bundled_model_path(), vocab_only=True, verbose=False)
    template = llama.metadata["tokenizer.chat_template"]

    def count(messages: list[Message]) -> int:
        text = render_chat(template, tuple(messages))
        return len(llama.tokenize(text.encode(), add_bos=False, special=True))

    return count


WORDS = (
    "the model keeps a running summary of what was said so far while the user asks about "
    "trains rivers bread music numbers 42 1997 café naïve Zürich über 東京 データ and more"
).split()


def say(rng: random.Random, turn: int) -> str:
    # mostly short turns, now and then a long paste
    n = rng.choice([3, 8, 20, 40, 300]) if turn % 17 else 600
    return " ".join(rng.choice(WORDS) for _ in range(n))


CONTEXT, REPLY = 2048, 512


@pytest.mark.parametrize("strategy", ["buffer", "window:6", "tokens", "summary:3"])
@pytest.mark.parametrize("counted", [True, False], ids=["server-count", "estimate"])
def test_200_turns_never_exceed_the_context(tokenizer, strategy: str, counted: bool) -> None:
    s = parse_strategy(strategy)
    rng = random.Random(strategy)
    calls = 0

    def count(messages: list[Message]) -> int:
        nonlocal calls
        calls += 1
        return tokenizer(messages)

    budget = CONTEXT - REPLY
    limits = dict(budget=budget, count_tokens=count if counted else None)
    system = "You are a helpful assistant. Answer briefly."
    history: list[Message] = []
    summary, covered = None, 0
    for turn in range(200):
        history.append(Message("user", say(rng, turn)))
        while plan := plan_summary(
            s, history, summarized=covered, previous_summary=summary, **limits
        ):
            request = summary_prompt(summary, plan.messages)
            assert tokenizer(request) <= budget
            # the "model" writes a summary of bounded length
            summary = " ".join((request[-1].content.split())[-60:])
            covered = plan.end
        calls = 0
        sent = select_messages(
            s,
            system=system,
            history=history,
            summary=summary,
            summarized=covered,
            **limits,
        )
        assert tokenizer(sent) + REPLY <= CONTEXT
        assert sent[0].role == "system" and sent[0].content.startswith(system)
        assert sent[1].role == "user" and sent[-1] == history[-1]
        if counted:  # a search, not one count per turn of history
            assert calls <= 2 + 2 * math.ceil(math.log2(turn + 1))
        history.append(Message("assistant", say(rng, turn + 1)))
    if s.kind == "window":
        assert len(sent) <= 1 + 2 * 6 + 1
