"""Log-probabilities without a model: the math over a row of logits, and the
decode loop holding each token's entry with its text (stop strings, half
characters), driven by the scripted step of ``test_decode_loop``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmkit.core.types import Logprob
from llmkit.engines.logprobs import FLOOR, HeldLogprobs, log_softmax, score, top_ids, top_k
from llmkit.engines.textstream import TextStream
from tests.test_decode_loop import EOS, FakeStep, collect, run, seq


def naive(logits: list[float]) -> list[float]:
    total = sum(math.exp(x) for x in logits)
    return [math.log(math.exp(x) / total) for x in logits]


@pytest.mark.parametrize(
    "logits", [[1.0, 2.0, 3.0], [0.0, 0.0], [-5.0, 10.0, 2.5, 2.5], [30.0, -30.0, 0.1]]
)
def test_log_softmax_matches_the_definition(logits):
    got = log_softmax(np.array(logits, dtype=np.float32))
    assert got == pytest.approx(naive(logits), abs=1e-6)
    assert math.fsum(np.exp(got)) == pytest.approx(1.0, abs=1e-6)  # exp runs in float32


def test_log_softmax_does_not_overflow_on_huge_logits():
    got = log_softmax(np.array([1000.0, 999.0, -1000.0], dtype=np.float32))
    assert np.all(np.isfinite(got)) and got[0] == pytest.approx(-math.log1p(math.exp(-1)))


def test_minus_infinity_becomes_openais_floor_not_a_non_json_number():
    logits = np.array([0.0, -np.inf, 1.0], dtype=np.float32)
    entry = score(logits, 1, 3, lambda t: bytes([97 + t]))
    assert entry.logprob == FLOOR
    assert [t.logprob for t in entry.top][-1] == FLOOR
    nothing = score(np.full(3, -np.inf, dtype=np.float32), 0, 2, lambda t: b"")
    assert [nothing.logprob, *(t.logprob for t in nothing.top)] == [FLOOR] * 3


def test_top_k_is_likeliest_first_with_ties_to_the_lower_id():
    lp = log_softmax(np.array([1.0, 3.0, 2.0, 3.0, 0.0], dtype=np.float32))
    assert [t for t, _ in top_k(lp, 3)] == [1, 3, 2]
    assert top_k(lp, 0) == [] and len(top_k(lp, 50)) == 5  # more than the vocabulary: all


@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_ids_agree_with_a_full_sort_near_the_top_or_not(k):
    rng = np.random.default_rng(k)
    peaked = rng.normal(size=5000).astype(np.float32)
    peaked[[7, 99, 4000]] += 40.0  # three tokens far above the rest: the search widens
    flat = np.round(rng.normal(size=5000), 1).astype(np.float32)  # many ties
    for row in (peaked, flat):
        want = sorted(range(row.size), key=lambda t: (-row[t], t))[:k]
        assert top_ids(row, k) == want


def test_score_gives_the_chosen_token_and_its_alternatives():
    logits = np.array([0.5, 2.0, 1.0, -1.0], dtype=np.float32)
    entry = score(logits, 2, 2, lambda t: f"<{t}>".encode())
    want = naive([0.5, 2.0, 1.0, -1.0])
    assert entry.token_id == 2 and entry.piece == b"<2>"
    assert entry.logprob == pytest.approx(want[2])
    assert [(t.token_id, t.piece) for t in entry.top] == [(1, b"<1>"), (2, b"<2>")]
    assert [t.logprob for t in entry.top] == pytest.approx([want[1], want[2]])
    assert score(logits, 0, 0, lambda t: b"").top == ()


def test_held_entries_go_out_once_their_text_has_started():
    held = HeldLogprobs()
    a, b = Logprob(1, b"", -0.1), Logprob(2, b"", -0.2)
    held.add(a, b"ab")
    held.add(b, b"cd")
    assert held.release(0) == ()
    assert [e.token_id for e in held.release(3)] == [1, 2]  # "abc" sent: b has started
    held.add(Logprob(3, b"", -0.3), b"ef")
    assert held.release(4) == ()  # its text starts at byte 4: not sent yet
    assert [(e.token_id, e.piece) for e in held.release(None)] == [(3, b"ef")]


# -- through the decode loop -------------------------------------------------------


class ScoringStep(FakeStep):
    """Scores token t as -t/10 (with no alternatives) for sequences that ask."""

    def step(self, active):
        out = super().step(active)
        for s, token in out:
            if s.logprobs is not None and isinstance(token, int):
                s.scored = Logprob(token, b"?", -token / 10)
        return out


def scored_run(pieces: dict[int, bytes], tokens: list[int], **kw) -> list:
    async def body(loop):
        return await collect(loop, seq(tokens, logprobs=0, **kw))

    return run(ScoringStep(pieces=pieces), body)


def ids(chunk) -> list[int]:
    return [e.token_id for e in chunk.logprobs]


def test_each_chunk_carries_its_tokens_and_end_of_generation_is_not_reported():
    chunks = scored_run({1: b"He", 2: b"llo", 3: b"!"}, [1, 2, 3, EOS])
    assert [(c.text, ids(c)) for c in chunks] == [("He", [1]), ("llo", [2]), ("!", [3]), ("", [])]
    assert [e.piece for c in chunks for e in c.logprobs] == [b"He", b"llo", b"!"]  # the text's
    assert chunks[0].logprobs[0].logprob == pytest.approx(-0.1)


def test_half_a_character_holds_its_token_until_the_character_is_whole():
    chunks = scored_run({1: "€".encode()[:2], 2: "€".encode()[2:] + b"!"}, [1, 2, EOS])
    assert [(c.text, ids(c)) for c in chunks] == [("", []), ("€!", [1, 2]), ("", [])]


def test_a_stop_string_drops_the_tokens_it_swallowed_and_keeps_those_that_showed():
    pieces = {1: b"Hello", 2: b" wor", 3: b"ld", 4: b"!"}
    chunks = scored_run(pieces, [1, 2, 3, 4], stop=(" world",))
    assert "".join(c.text for c in chunks) == "Hello"
    assert [i for c in chunks for i in ids(c)] == [1]
    # A token that ends inside the stop string showed some text: it is reported.
    chunks = scored_run({1: b"one, t", 2: b"wo, three", 3: b" more"}, [1, 2, 3], stop=(", three",))
    assert "".join(c.text for c in chunks) == "one, two"
    assert [i for c in chunks for i in ids(c)] == [1, 2]


def test_a_held_start_of_a_stop_string_that_is_not_one_comes_out_with_its_tokens():
    chunks = scored_run({1: b"a", 2: b" wo", 3: b"nder"}, [1, 2, 3, EOS], stop=(" world",))
    assert [(c.text, ids(c)) for c in chunks] == [
        ("a", [1]),
        ("", []),
        (" wonder", [2, 3]),
        ("", []),
    ]


def test_max_tokens_releases_what_was_held():
    chunks = scored_run({1: b"a", 2: b" wo"}, [1, 2, 2], stop=(" world",), max_tokens=2)
    assert chunks[-1].finish_reason == "length" and chunks[-1].text == " wo"
    assert [i for c in chunks for i in ids(c)] == [1, 2]


def test_a_sequence_that_does_not_ask_gets_no_entries():
    async def body(loop):
        return await collect(loop, seq([1, 2, EOS]))

    chunks = run(ScoringStep(), body)
    assert all(c.logprobs == () for c in chunks) and len(chunks) == 3


def test_the_text_stream_counts_the_bytes_it_has_handed_out():
    text = TextStream(("STOP",))
    text.push("é".encode())
    text.push(b"ST")
    assert text.sent == 2  # "é"; "ST" may start the stop string
    text.push(b"x")
    assert text.sent == 5 and text.flush() == ""
