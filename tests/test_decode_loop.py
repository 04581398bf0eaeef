"""The decode loop both in-process engines share, driven by a scripted step
function (no model): what reaches the caller, the busy rule, cancel, shutdown,
a failing step, and one wake-up of the event loop per step."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from llmkit.core.types import Chunk, ToolCallDelta
from llmkit.engines.decode_loop import Backend, DecodeLoop, Sequence
from llmkit.engines.families.base import Parsed
from llmkit.engines.reply import Reply
from llmkit.engines.textstream import TextStream
from llmkit.errors import ModelFailedError, ServerBusyError

EOS = 0
FOREVER = [7] * 10_000


class Script:
    """A sequence's state: the tokens it will sample, in order."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = list(tokens)


class FakeStep(Backend[Script]):
    """Token t reads as ``pieces[t]``; every step samples each active sequence's next
    scripted token. ``fail`` makes the next step raise; ``wait_for`` holds steps
    until that many sequences are active; ``gate`` holds them until it is set."""

    def __init__(self, parallel: int = 2, pieces: dict[int, bytes] | None = None) -> None:
        self.parallel = parallel
        self.pieces = pieces or {}
        self.steps = 0
        self.fail: Exception | None = None
        self.fail_one: Sequence[Script] | None = None
        self.wait_for = 0
        self.gate = threading.Event()
        self.gate.set()
        self.released: list[Sequence[Script]] = []
        self.forced: list[int] = []  # tokens written, not sampled
        self.closed: list[tuple[int, bool]] = []  # when answer_starts came, and how
        self.recovered = 0
        self.delay = 0.002  # a step takes a while, as a real one does

    def admit(self, seq: Sequence[Script]) -> None:
        seq.cached = 1

    def step(
        self, active: list[Sequence[Script]]
    ) -> list[tuple[Sequence[Script], int | Exception]]:
        if len(active) < self.wait_for or not self.gate.wait(0.005):
            time.sleep(0.001)
            return []
        self.steps += 1
        time.sleep(self.delay)
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e
        out: list[tuple[Sequence[Script], int | Exception]] = []
        for seq in active:
            if seq is self.fail_one:
                out.append((seq, RuntimeError("this one broke")))
            elif seq.next_forced is not None:  # the loop writes it: nothing is sampled
                self.forced.append(seq.next_forced)
                out.append((seq, seq.next_forced))
            else:
                out.append((seq, seq.state.tokens.pop(0)))
        return out

    def answer_starts(self, seq: Sequence[Script], after_thinking: bool) -> None:
        self.closed.append((seq.n_generated, after_thinking))

    def piece(self, seq: Sequence[Script], token: int) -> bytes:
        return self.pieces.get(token, b"x")

    def is_eog(self, token: int) -> bool:
        return token == EOS

    def release(self, seq: Sequence[Script]) -> None:
        self.released.append(seq)

    def recover(self) -> None:
        self.recovered += 1


def seq(
    tokens: list[int], *, max_tokens: int = 10_000, stop: tuple[str, ...] = (), **kw
) -> Sequence:
    return Sequence(
        prompt=[1, 2, 3], state=Script(tokens), max_tokens=max_tokens, text=TextStream(stop), **kw
    )


async def collect(loop: DecodeLoop, s: Sequence) -> list[Chunk]:
    return [c async for c in loop.stream(s)]


def run(backend: FakeStep, body: Callable[[DecodeLoop], object], max_queue: int = 4) -> object:
    async def main() -> object:
        loop = DecodeLoop(backend, max_queue=max_queue, name="test-decode")
        try:
            return await asyncio.wait_for(body(loop), 10)
        finally:
            await asyncio.to_thread(loop.close)

    return asyncio.run(main())


def test_tokens_become_chunks_and_the_last_carries_usage():
    pieces = {1: b"He", 2: b"llo", 3: b"!"}

    async def body(loop):
        return await collect(loop, seq([1, 2, 3, EOS]))

    chunks = run(FakeStep(pieces=pieces), body)
    assert [(c.text, c.token_ids, c.finish_reason) for c in chunks] == [
        ("He", (1,), None), ("llo", (2,), None), ("!", (3,), None), ("", (EOS,), "stop"),
    ]  # fmt: skip
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (3, 4, 1)


def test_max_tokens_ends_with_length_and_ignore_eos_reads_past_eos():
    async def body(loop):
        short = await collect(loop, seq([5, 5, 5, 5], max_tokens=2))
        past = await collect(loop, seq([5, EOS, 5], max_tokens=3, ignore_eos=True))
        return short, past

    short, past = run(FakeStep(), body)
    assert [c.finish_reason for c in short] == [None, "length"]
    assert short[-1].usage.completion_tokens == 2
    assert [c.token_ids for c in past] == [(5,), (EOS,), (5,)] and past[
        -1
    ].finish_reason == "length"


def test_a_stop_string_across_tokens_is_cut_and_never_leaks():
    pieces = {1: b"one, t", 2: b"wo, three", 3: b" more"}

    async def body(loop):
        return await collect(loop, seq([1, 2, 3], stop=(", three",)))

    chunks = run(FakeStep(pieces=pieces), body)
    assert "".join(c.text for c in chunks) == "one, two"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 2


def test_busy_once_the_free_slots_and_the_queue_are_taken():
    backend = FakeStep(parallel=1)
    backend.gate.clear()  # nothing finishes while we fill it

    async def body(loop):
        loop.submit(seq(FOREVER))
        loop.submit(seq(FOREVER))  # the queue's one place (or the slot, once admitted)
        with pytest.raises(ServerBusyError, match="busy"):
            loop.submit(seq(FOREVER))

    run(backend, body, max_queue=1)


async def load_becomes(loop, load: tuple[int, int], timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    """Wait (polling, with a deadline) until the loop's (running, queued) is ``load``."""
    deadline = time.monotonic() + timeout
    while loop.load != load:
        assert time.monotonic() < deadline, f"load stayed {loop.load}, not {load}"
        await asyncio.sleep(0.005)


def test_closing_a_stream_cancels_it_and_frees_its_slot():
    backend = FakeStep(parallel=1)

    async def body(loop):
        first = seq(FOREVER)
        stream = loop.stream(first)
        assert (await anext(stream)).token_ids == (7,)
        queued = seq(FOREVER)
        queued_stream = loop.stream(queued)
        waiting = asyncio.ensure_future(anext(queued_stream))
        await load_becomes(loop, (1, 1))  # the second one waits in the queue
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await queued_stream.aclose()  # cancelled while still queued
        await stream.aclose()
        await load_becomes(loop, (0, 0))
        assert await collect(loop, seq([EOS]))  # the slot serves the next one
        return first, queued

    first, queued = run(backend, body)
    assert first in backend.released and queued in backend.released


def test_finish_all_ends_streams_with_length_and_refuses_new_work():
    backend = FakeStep(parallel=1, pieces={7: b"a"})

    async def body(loop):
        running = loop.stream(seq(FOREVER))
        assert (await anext(running)).text == "a"
        queued = asyncio.ensure_future(collect(loop, seq(FOREVER)))
        await load_becomes(loop, (1, 1))
        assert loop.finish_all() == 2
        rest = [c async for c in running]
        with pytest.raises(ServerBusyError):
            await queued
        with pytest.raises(ServerBusyError, match="shutting down"):
            await collect(loop, seq([EOS]))
        return rest

    rest = run(backend, body)
    assert rest[-1].finish_reason == "length" and rest[-1].usage is not None


def test_a_failing_step_ends_its_sequences_with_engine_error_and_the_loop_goes_on():
    backend = FakeStep(parallel=2)

    async def body(loop):
        a, b = seq(FOREVER), seq(FOREVER)
        streams = [loop.stream(a), loop.stream(b)]
        for s in streams:
            await anext(s)
        backend.fail = RuntimeError("boom")
        for s in streams:
            with pytest.raises(ModelFailedError, match="The model failed: boom") as failed:
                async for _ in s:
                    pass
            assert failed.value.status == 503  # the request failed; the server did not
        return await collect(loop, seq([5, EOS]))

    after = run(backend, body)
    assert after[-1].finish_reason == "stop" and backend.recovered == 1


def test_a_failure_of_one_sequence_ends_only_that_one():
    backend = FakeStep(parallel=2)
    backend.wait_for = 2

    async def body(loop):
        bad = seq(FOREVER)
        backend.fail_one = bad
        good = asyncio.ensure_future(collect(loop, seq([5, 5, EOS])))
        with pytest.raises(ModelFailedError, match="this one broke"):
            await collect(loop, bad)
        backend.wait_for = 0  # the other one goes on alone
        return await good

    assert run(backend, body)[-1].finish_reason == "stop"


def test_each_step_reaches_the_event_loop_in_one_wake_up():
    backend = FakeStep(parallel=3)
    backend.wait_for = 3  # every step carries a token for each of the three
    calls = 0

    async def body(loop):
        nonlocal calls
        ev = asyncio.get_running_loop()
        original = ev.call_soon_threadsafe

        def counting(*args, **kw):
            nonlocal calls
            calls += 1
            return original(*args, **kw)

        ev.call_soon_threadsafe = counting  # type: ignore[method-assign]
        try:
            seqs = [seq([5] * 6, max_tokens=6) for _ in range(3)]
            return await asyncio.gather(*(collect(loop, s) for s in seqs))
        finally:
            del ev.call_soon_threadsafe

    results = run(backend, body)
    assert [len(r) for r in results] == [6, 6, 6]
    assert backend.steps == 6 and calls == 6  # 18 chunks, 6 wake-ups


# -- chat replies: the family's parser on the decode thread ---------------------------


class Marks:
    """A stand-in ``ReplyParser``: "[" ... "]" is thinking, "@name" a call, every
    other character content (markers whole, one per piece here)."""

    def __init__(self, thinking: bool = False, max_calls: int | None = None) -> None:
        self.thinking, self.calls, self.done, self._max = thinking, 0, False, max_calls

    def push(self, text: str) -> Parsed:
        out = Parsed()
        for ch in text:
            if ch in "[]":
                self.thinking = ch == "["
            elif ch == "@":
                if self._max is not None and self.calls >= self._max:
                    self.done = True
                    continue
                out += Parsed(calls=(ToolCallDelta(self.calls, id="c", name="f"),))
                self.calls += 1
            else:
                out += Parsed(reasoning=ch) if self.thinking else Parsed(content=ch)
        return out

    def flush(self) -> Parsed:
        return Parsed()


THINK = {1: b"[", 2: b"]", 3: b"a", 4: b"b", 5: b"@", 6: b"\n"}


def test_a_reply_is_split_and_a_spent_budget_is_closed_with_forced_tokens():
    backend = FakeStep(pieces=THINK)

    async def body(loop):
        # It starts inside the thinking (the prompt opened it) and thinks on: after 3
        # thinking tokens the loop writes the close (2, then 6) and the answer follows.
        s = seq(
            [3, 3, 3, 3, 3, 4, 4, EOS], reply=Reply(Marks(thinking=True), budget=3, close=(2, 6))
        )
        return await collect(loop, s)

    chunks = run(backend, body)
    assert "".join(c.reasoning for c in chunks) == "aaa"
    assert "".join(c.text for c in chunks) == "\naabb"
    assert [t for c in chunks for t in c.token_ids] == [3, 3, 3, 2, 6, 3, 3, 4, 4, EOS]
    # The answer's grammar binds once, after the last token the loop wrote: the
    # close ended the thinking at its first token (2), but 6 was still to come.
    assert backend.forced == [2, 6] and backend.closed == [(5, True)]
    usage = chunks[-1].usage
    assert (usage.completion_tokens, usage.reasoning_tokens) == (10, 3)


def test_a_budget_of_zero_writes_the_close_first_and_a_closed_thinking_is_never_forced():
    backend = FakeStep(pieces=THINK)

    async def body(loop):
        zero = Reply(Marks(thinking=True), budget=0, close=(2,))
        s = seq([4, EOS], reply=zero)
        s.force(zero.to_force())
        first = await collect(loop, s)
        # The model closes its own thinking within the budget: nothing is written.
        own = await collect(
            loop, seq([3, 2, 4, EOS], reply=Reply(Marks(True), budget=5, close=(2,)))
        )
        return first, own

    first, own = run(backend, body)
    assert [t for c in first for t in c.token_ids] == [2, 4, EOS]
    assert first[-1].usage.reasoning_tokens == 0 and "".join(c.text for c in first) == "b"
    assert backend.forced == [2]  # only the zero budget's close
    assert own[-1].usage.reasoning_tokens == 1 and "".join(c.text for c in own) == "b"


def test_a_thinking_opened_for_the_model_is_written_first_and_closed_by_the_budget():
    """``open_first`` (a grammar for the whole answer of a family that always
    thinks): the open marker goes in before any sampled token, is not thinking
    itself, and the budget's close comes after the budget's tokens."""
    backend = FakeStep(pieces=THINK)

    async def body(loop):
        opened = Reply(Marks(), budget=2, close=(2,), open_first=(1,))
        s = seq([3, 3, 3, 4, EOS], reply=opened)
        s.force(opened.to_force())
        return await collect(loop, s)

    chunks = run(backend, body)
    assert [t for c in chunks for t in c.token_ids] == [1, 3, 3, 2, 3, 4, EOS]
    assert "".join(c.reasoning for c in chunks) == "aa"
    assert "".join(c.text for c in chunks) == "ab"
    assert backend.forced == [1, 2] and backend.closed == [(4, True)]
    assert chunks[-1].usage.reasoning_tokens == 2


def test_the_one_call_allowed_ends_the_reply_at_its_token_with_exact_usage():
    async def body(loop):
        one = await collect(loop, seq([5, 5, 5, 5], reply=Reply(Marks(max_calls=1), one_call=True)))
        # no tools offered: a raw prompt's text is the reply as it is
        raw = await collect(loop, seq([3, 5, EOS]))
        return one, raw

    one, raw = run(FakeStep(pieces=THINK), body)
    assert [len(c.tool_calls) for c in one] == [1] and one[-1].finish_reason == "tool_calls"
    assert one[-1].usage.completion_tokens == 1
    assert "".join(c.text for c in raw) == "a@" and raw[-1].finish_reason == "stop"


def test_a_parser_that_fails_ends_its_reply_not_the_loop():
    class Broken(Marks):
        def push(self, text: str) -> Parsed:
            raise ValueError("bad parser")

    async def body(loop):
        with pytest.raises(ModelFailedError):
            await collect(loop, seq([3, 3], reply=Reply(Broken())))
        return await collect(loop, seq([3, EOS]))

    after = run(FakeStep(pieces=THINK), body)
    assert after[-1].finish_reason == "stop"


class Drafting(FakeStep):
    """Each step brings a sequence up to ``per_step`` scripted tokens: one from the
    step, the rest through ``more``, as a backend that verified drafts does."""

    def __init__(self, per_step: int, **kw) -> None:
        super().__init__(**kw)
        self.per_step = per_step
        self.left: dict[int, int] = {}
        self.asked_after_end = 0

    def step(self, active):
        out = super().step(active)
        for s, _ in out:
            self.left[id(s)] = self.per_step - 1
        return out

    def more(self, seq):
        if seq in self.released:
            self.asked_after_end += 1
        if self.left.get(id(seq), 0) <= 0 or not seq.state.tokens:
            return None
        self.left[id(seq)] -= 1
        return seq.state.tokens.pop(0)


def test_tokens_a_step_brings_are_taken_one_by_one_and_stop_where_the_reply_ends():
    backend = Drafting(4, pieces={1: b"a", 2: b"b", 3: b"STOP", 4: b"z"})

    async def body(loop):
        s = seq([1, 2, 1, 2, 1, 3, 4, 4, 4], stop=("STOP",))
        return await collect(loop, s), s

    chunks, s = run(backend, body)
    assert "".join(c.text for c in chunks) == "ababa"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 6
    assert s.state.tokens == [4, 4, 4]  # nothing taken past the stop string
    assert backend.asked_after_end == 0
    # The step's tokens travel together: two steps, so at most two chunks.
    assert len(chunks) <= 2 and backend.steps == 2
