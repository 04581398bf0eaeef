"""Drafting without a second model: candidate tokens for speculative decoding
from what the sequence has already seen, its prompt and the text it generated.

``SuffixIndex`` is a suffix automaton over a sequence's tokens (the prompt, which
holds a conversation's earlier turns too, then each token as it comes): after
every token it knows the longest suffix of the text that occurred before, and
where, so the tokens that followed that earlier occurrence are the draft. This
is prompt lookup (llama.cpp's ``ngram-*`` speculation, vLLM's n-gram and suffix
decoding) with the longest match found in constant time per token rather than
an n-gram of fixed length. Each drafted token also carries what the automaton
knows of it: whether that context was always followed by it so far, or by other
tokens too (a value in a JSON list, a number in a numbered list), or whether the
draft has run past the text into its own tokens (a loop, drafted round again).

``DraftPolicy`` decides where each draft is cut, from how drafted tokens of each
kind fared in this sequence (decayed counts) and from what a step costs
(``StepCost``: a fixed part and a part per row, measured on the running engine):
at the length where the expected tokens per second of the step peak, which is
no draft at all where drafts keep failing (prose sampled at a temperature),
long ones where they keep holding (a file returned whole) and a short one that
stops before the value a JSON key is followed by.
"""

from __future__ import annotations

from typing import Protocol

#: The prompt tokens indexed at most (its last ones): the index costs a few
#: microseconds and a small dict per token, made once per request off the decode thread.
INDEX_MAX = 16384
#: Tokens drafted in one step at most.
DRAFT_MAX = 32
#: A draft needs the text's last tokens to have occurred before, at least this many:
#: a single repeated token predicts little.
MIN_MATCH = 2
#: What the automaton knows of a drafted token: its context was always followed by
#: it so far (SURE), by other tokens too (BRANCH), or the draft has run past the end
#: of the text and repeats itself (LOOP).
SURE, BRANCH, LOOP = 0, 1, 2
#: Per kind, the accepted and rejected counts a sequence starts from and drifts
#: back to when it drafts nothing for a while (so a reply that turns from prose to
#: a copy drafts again).
PRIOR = ((3.0, 1.0), (1.0, 1.0), (1.0, 1.0))
#: Each drafted token that is judged leaves the counts of its kind this share of
#: their weight (the last twenty or so speak for the next), and each step moves
#: them this share of the way back to the prior.
TOKEN_DECAY, STEP_DRIFT = 0.95, 0.01
#: A step's fixed cost over its cost per row, until the engine has measured its own
#: (the bundled 135M model on a 2-core CPU, bench/columns.py: 3.3 to 4.1 in two
#: runs with llmkit's Q4_1 column kernel, 2.4 to 2.9 on ggml's loop).
FIXED_PER_ROW = 4.0


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
        return self.candidates(k, min_match)[0]

    def candidates(self, k: int, min_match: int = MIN_MATCH) -> tuple[list[int], list[int]]:
        """Up to ``k`` tokens that followed the longest earlier match of the text's
        end, and the kind of each (``SURE``, ``BRANCH``, ``LOOP``). Where that
        continuation reaches the end of the text, the draft goes on from its own
        start: the text is repeating itself with that period."""
        s = self._link[self._last]
        if s <= 0 or self._len[s] < min_match or k <= 0:
            return [], []
        nxt, text = self._next, self.text
        pos, size = self._first[s] + 1, len(text)
        tokens: list[int] = []
        kinds: list[int] = []
        state: int | None = s  # the automaton's state for the match and the draft so far
        while len(tokens) < k:
            if pos < size:
                token = text[pos]
            elif pos - size < len(tokens):
                token = tokens[pos - size]
            else:
                break
            if state is None:
                kinds.append(LOOP)
            else:
                kinds.append(BRANCH if len(nxt[state]) > 1 else SURE)
                state = nxt[state].get(token)
            tokens.append(token)
            pos += 1
        return tokens, kinds


class StepCost:
    """What a decode step costs: ``fixed`` plus ``per_row`` for each row of its
    batch, fitted to the steps the engine times (least squares, each step counting
    a little less than the one after it). Only the ratio of the two steers drafts."""

    __slots__ = ("_n", "_nn", "_nt", "_t", "_w")

    def __init__(self) -> None:
        self._w = self._n = self._nn = self._t = self._nt = 0.0

    def observe(self, rows: int, seconds: float) -> None:
        keep = 0.99
        self._w = self._w * keep + 1
        self._n = self._n * keep + rows
        self._nn = self._nn * keep + rows * rows
        self._t = self._t * keep + seconds
        self._nt = self._nt * keep + rows * seconds

    def fixed_per_row(self) -> float:
        """The fixed cost of a step in rows' worth: large where rows are nearly free
        (a GPU), small where each row costs about what a step does."""
        w, n, nn, t, nt = self._w, self._n, self._nn, self._t, self._nt
        spread = w * nn - n * n  # the rows' variance, times w squared
        if w < 8 or spread < 4 * w * w:  # too few steps, or all of about one size
            return FIXED_PER_ROW
        per_row = (w * nt - n * t) / spread
        fixed = (t - per_row * n) / w
        if per_row <= 0 or fixed <= 0:
            return FIXED_PER_ROW
        return min(100.0, max(0.1, fixed / per_row))


class DraftPolicy:
    """Where one sequence cuts its drafts, from how its drafted tokens of each kind
    fared: each kind's acceptance is estimated from decayed counts."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen = [list(prior) for prior in PRIOR]

    def odds(self, kind: int) -> float:
        """The estimated chance that a drafted token of ``kind`` is taken, given the
        one before it was."""
        accepted, rejected = self._seen[kind]
        return accepted / (accepted + rejected)

    def cut(self, kinds: list[int], fixed_per_row: float, streams: int = 1) -> int:
        """How many of a draft of these kinds to verify: where the expected tokens
        the step brings, over its cost in rows, peak. Several streams share a step's
        fixed cost, so each pays less of it and drafts must hold more often to pay."""
        fixed = fixed_per_row / max(1, streams)
        best, length = 1.0 / (fixed + 1), 0
        p = [self.odds(k) for k in range(len(PRIOR))]
        reach, expected = 1.0, 0.0  # the chance the draft's tokens so far all hold
        for i, kind in enumerate(kinds, 1):
            reach *= p[kind]
            expected += reach
            rate = (1 + expected) / (fixed + 1 + i)
            if rate > best:
                best, length = rate, i
        return length

    def step(self) -> None:
        """A step went by: the counts move a little back towards the prior."""
        for counts, prior in zip(self._seen, PRIOR, strict=True):
            counts[0] += (prior[0] - counts[0]) * STEP_DRIFT
            counts[1] += (prior[1] - counts[1]) * STEP_DRIFT

    def update(self, kinds: list[int], accepted: int) -> None:
        """A draft of these kinds had its first ``accepted`` tokens taken."""
        for i, kind in enumerate(kinds[: accepted + 1]):
            counts = self._seen[kind]
            counts[0] *= TOKEN_DECAY
            counts[1] *= TOKEN_DECAY
            counts[0 if i < accepted else 1] += 1
