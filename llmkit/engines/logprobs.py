"""Log-probabilities of a reply's tokens, for the engines that run the model here
(llama.cpp, transformers): the math over one row of logits, and the bookkeeping
that lets them travel with their text.

Which distribution: the model's own, a log-softmax over the raw logits of the
position, before the request's temperature, penalties, logit bias, top-k / top-p
or grammar touch them. That is vLLM's default (``logprobs_mode="raw_logprobs"``)
and what llama.cpp's server reports, and OpenAI's values behave the same way
(they do not move with temperature). A value then means one thing whatever the
sampling settings were: replies sampled differently compare, and a greedy reply
without penalties, bias or grammar always chose the likeliest token. The cost is
that a token the sampler was forced to (a grammar, a bias) may show a low value:
it is what the model thought, not what the sampler did.

Only sequences that ask pay: nothing here runs for the others.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from llmkit.core.types import Logprob

#: What OpenAI writes for a probability too small to say (a logit of -inf).
FLOOR = -9999.0
#: Where ``top_ids`` looks first: logits within this of the largest (e^-16, 1e-7 of it).
NEAR = 16.0


def logsumexp(logits: np.ndarray) -> float:
    """log(sum(exp(logits))), with the row's maximum taken out first so ``exp`` never
    overflows. ``exp`` runs in float32 (nine times faster than float64 over a
    vocabulary) and the sum in float64: about 1e-7 off, far below what a float32
    logit itself can say."""
    x = np.asarray(logits, dtype=np.float32)
    m = float(x.max())
    if not math.isfinite(m):  # every logit -inf (or a NaN): nothing sensible to say
        return math.inf
    return m + math.log(float(np.exp(x - m).sum(dtype=np.float64)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``logits`` (one row over the vocabulary) as log-probabilities, in float64."""
    return np.asarray(logits, dtype=np.float64) - logsumexp(logits)


def top_ids(logits: np.ndarray, k: int) -> list[int]:
    """The ids of the ``k`` largest values, largest first; ties go to the lower id,
    so the answer never depends on how the sort breaks them."""
    x = np.asarray(logits)
    k = min(k, x.shape[0])
    if k <= 0:
        return []
    # Partitioning the whole vocabulary costs more than the softmax: look first
    # among the tokens near the top, which holds the k largest whenever it holds k.
    near = np.flatnonzero(x >= x.max() - NEAR)
    if near.size < k:
        near = np.arange(x.shape[0])
    if near.size > k:  # keep every token tied with the k-th: the lower ids win below
        values = x[near]
        near = near[values >= np.partition(values, near.size - k)[near.size - k]]
    return sorted(near.tolist(), key=lambda t: (-x[t], t))[:k]


def top_k(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` likeliest (token id, log-probability), likeliest first."""
    return [(t, _finite(logprobs[t])) for t in top_ids(logprobs, k)]


def score(logits: np.ndarray, token: int, k: int, piece: Callable[[int], bytes]) -> Logprob:
    """``token``'s entry at a position whose raw logits are ``logits``, with the
    ``k`` likeliest tokens there (``piece``: a token's bytes). Only the values
    reported are computed, not the whole row of log-probabilities."""
    lse = logsumexp(logits)

    def value(t: int) -> float:
        return _finite(float(logits[t]) - lse)

    top = tuple(Logprob(t, piece(t), value(t)) for t in top_ids(logits, k))
    return Logprob(token, piece(token), value(token), top)


def _finite(v: float) -> float:
    return max(float(v), FLOOR) if v == v else FLOOR  # -inf, and NaN (from inf - inf) too


class HeldLogprobs:
    """A sequence's entries waiting for their text. A token's entry goes out with
    the first chunk that carries some of its text, so it is held as long as the
    text is (half a character, the start of what may be a stop string), and one
    whose text a stop string swallowed whole is never reported."""

    def __init__(self) -> None:
        self._held: collections.deque[tuple[int, Logprob]] = collections.deque()
        self._bytes = 0  # bytes of every token added so far

    def add(self, entry: Logprob, piece: bytes) -> None:
        """The next token (``piece``: the bytes it added to the text)."""
        self._held.append((self._bytes, replace(entry, piece=piece)))
        self._bytes += len(piece)

    def release(self, sent: int | None) -> tuple[Logprob, ...]:
        """The entries whose text has started to go out (``sent``: bytes of text sent
        so far); None: the generation ended without a stop string, all of them."""
        out = []
        while self._held and (sent is None or self._held[0][0] < sent):
            out.append(self._held.popleft()[1])
        return tuple(out)
