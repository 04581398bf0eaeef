"""Drafting without a second model: candidate tokens for speculative decoding
from what the sequence has already seen, its prompt and the text it generated.

``SuffixIndex`` is a suffix automaton over a sequence's tokens (the prompt, which
holds a conversation's earlier turns too, then each token as it comes): after
every token it knows the longest suffix of the text that occurred before, and
where, so the tokens that followed that earlier occurrence are the draft. This
is prompt lookup (llama.cpp's ``ngram-*`` speculation, vLLM's n-gram and suffix
decoding) with the longest match found in constant time per token rather than
an n-gram of fixed length.

``DraftPolicy`` decides how many tokens to draft from how the last drafts fared:
longer after a draft fully accepted, shorter after one cut short, none for a
growing number of steps after drafts that failed outright (prose sampled at a
temperature), so where drafts keep failing the cost falls towards nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: The prompt tokens indexed at most (its last ones): the index costs a few
#: microseconds and a small dict per token, made once per request off the decode thread.
INDEX_MAX = 16384
#: Tokens drafted in one step at most, and at first.
DRAFT_MAX, DRAFT_START = 32, 4
#: A draft needs the text's last tokens to have occurred before, at least this many:
#: a single repeated token predicts little.
MIN_MATCH = 2
#: After drafts that failed outright, drafting pauses for up to this many steps.
BACKOFF_MAX = 64


class Drafter(Protocol):
    """Drafts from a second, small model (``draft_model``)."""

    def draft(self, lane: int, ctx: list[int], token: int, k: int) -> list[int]:
        """Up to ``k`` tokens to follow ``ctx`` (what ``lane``'s cells hold) and ``token``."""
        ...

    def forget(self, lane: int) -> None:
        """``lane``'s sequence is over."""
        ...

    def close(self) -> None: ...


class SuffixIndex:
    """A suffix automaton over a token list grown one token at a time."""

    __slots__ = ("_first", "_last", "_len", "_link", "_next", "text")

    def __init__(self, tokens: list[int] = ()) -> None:  # type: ignore[assignment]
        self._next: list[dict[int, int]] = [{}]
        self._link = [-1]
        self._len = [0]
        self._first = [-1]  # where the state's strings first end, in ``text``
        self._last = 0
        self.text: list[int] = []
        for t in tokens[-INDEX_MAX:]:
            self.extend(t)

    def extend(self, token: int) -> None:
        nxt, link, ln, first = self._next, self._link, self._len, self._first
        pos = len(self.text)
        self.text.append(token)
        cur = len(ln)
        nxt.append({})
        ln.append(ln[self._last] + 1)
        link.append(0)
        first.append(pos)
        p = self._last
        while p != -1 and token not in nxt[p]:
            nxt[p][token] = cur
            p = link[p]
        if p != -1:
            q = nxt[p][token]
            if ln[p] + 1 == ln[q]:
                link[cur] = q
            else:
                clone = len(ln)
                nxt.append(dict(nxt[q]))
                ln.append(ln[p] + 1)
                link.append(link[q])
                first.append(first[q])
                while p != -1 and nxt[p].get(token) == q:
                    nxt[p][token] = clone
                    p = link[p]
                link[q] = link[cur] = clone
        self._last = cur

    def match(self) -> tuple[int, int]:
        """(length, end): the longest suffix of the text that also occurs earlier,
        and where its first earlier occurrence ends (-1 when there is none)."""
        s = self._link[self._last]
        if s <= 0:
            return 0, -1
        return self._len[s], self._first[s]

    def draft(self, k: int, min_match: int = MIN_MATCH) -> list[int]:
        """Up to ``k`` tokens that followed the longest earlier match of the text's end."""
        n, end = self.match()
        if n < min_match or k <= 0:
            return []
        return self.text[end + 1 : end + 1 + k]


@dataclass
class DraftPolicy:
    """How many tokens one sequence drafts next, from how its drafts fared."""

    cap: int = DRAFT_START
    fails: int = 0  # drafts in a row with nothing accepted
    wait: int = 0  # steps left without drafting

    def length(self) -> int:
        if self.wait > 0:
            self.wait -= 1
            return 0
        return self.cap

    def update(self, drafted: int, accepted: int) -> None:
        if not drafted:
            return
        if accepted == drafted:
            self.cap, self.fails = min(DRAFT_MAX, self.cap * 2), 0
        elif accepted == 0:
            self.fails += 1
            self.cap = max(1, self.cap // 2)
            self.wait = min(BACKOFF_MAX, (1 << self.fails) - 1)
        else:
            # Cut short: next time about what was taken, a little more.
            self.cap, self.fails = max(1, min(DRAFT_MAX, accepted + 1)), 0
