"""TextStream: token byte pieces in, clean text deltas out (table-driven)."""

from __future__ import annotations

import pytest

from llmkit.engines.textstream import TextStream


def run(pieces: list[bytes], stop: tuple[str, ...] = ()) -> tuple[list[str], bool]:
    ts = TextStream(stop)
    out = [ts.push(p) for p in pieces]
    out.append(ts.flush())
    return out, ts.stopped


@pytest.mark.parametrize(
    ("pieces", "stop", "deltas", "stopped"),
    [
        # a Chinese character split over two tokens comes out whole, once
        ([b"\xe4\xbd", b"\xa0", b"!"], (), ["", "你", "!", ""], False),
        # an emoji over three tokens
        ([b"\xf0\x9f", b"\x8e", b"\x89"], (), ["", "", "🎉", ""], False),
        # a stop string straddling two tokens: nothing of it leaks
        ([b"Hello ", b"wor", b"ld!"], ("world",), ["Hello ", "", ""], True),
        # a held prefix that turns out not to be the stop string is released
        ([b"Hello ", b"wor", b"k!"], ("world",), ["Hello ", "", "work!", ""], False),
        # text before the stop string inside the same token is kept
        ([b"ab", b"cSTOPdef"], ("STOP",), ["ab", "c"], True),
        # the earliest of several stop strings wins
        ([b"x END y HALT"], ("HALT", "END"), ["x "], True),
        # a generation cut off mid-character drops the partial bytes, no U+FFFD
        ([b"ok", b"\xe4\xbd"], (), ["ok", "", ""], False),
        # a held partial stop at the end is flushed as text
        ([b"see you wo"], ("world",), ["see you ", "wo"], False),
    ],
)
def test_textstream(pieces, stop, deltas, stopped):
    out, was_stopped = run(pieces, stop)
    assert out[: len(deltas)] == deltas
    assert was_stopped == stopped


def test_after_stop_everything_is_dropped():
    ts = TextStream(("\n",))
    assert ts.push(b"line\nmore") == "line"
    assert ts.push(b"even more") == ""
    assert ts.flush() == ""


@pytest.mark.parametrize(
    ("pieces", "matched"),
    [
        ([b"say END, not world"], "END"),  # both in one piece: the first in the text
        ([b"a", b"b", b"c"], None),
        ([b"xx", b"wo", b"rld"], "world"),  # straddling pieces
    ],
)
def test_the_stop_string_that_matched_is_named(pieces, matched):
    ts = TextStream(stop=("END", "world"))
    for p in pieces:
        ts.push(p)
    assert ts.matched == matched
