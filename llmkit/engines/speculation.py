"""Speculative sampling's acceptance rule (Leviathan et al. 2023; Chen et al.
2023), for any draft distribution: a drafted token ``x`` drawn from ``q`` is
kept with probability ``min(1, p(x) / q(x))``, else the token is drawn from the
normalised ``max(0, p - q)``. Either way the token that comes out follows the
target's ``p`` exactly.

Where the draft is a single token (prompt lookup, or a draft model's greedy
choice), ``q`` is a point mass on it: the draft is kept with probability
``p(x)``, else the token comes from ``p`` without ``x``. That is the same law as
drawing from ``p`` once and keeping the draft when the draw equals it, which is
what the llama.cpp engine does: its sampler chain draws from ``p`` with the
request's own random stream, one draw per token it keeps, as without
speculation. So a seeded reply is the same with speculation as without it.
"""

from __future__ import annotations

import numpy as np


def accept_draft(
    p: np.ndarray, q: np.ndarray, drafted: int, rng: np.random.Generator
) -> tuple[int, bool]:
    """The token at this position, given the target's ``p``, the draft's ``q``
    (both probability vectors) and the token the draft drew from ``q``; and
    whether that is the draft."""
    px, qx = float(p[drafted]), float(q[drafted])
    if qx <= 0.0 or rng.random() * qx < px:  # min(1, px / qx), without dividing
        return drafted, True
    rest = np.maximum(p - q, 0.0)
    total = rest.sum()
    if total <= 0.0:  # p == q: nothing left over; the draft was p's own draw
        return drafted, True
    return int(rng.choice(len(p), p=rest / total)), False


def accept_point_draft(p: np.ndarray, drafted: int, rng: np.random.Generator) -> tuple[int, bool]:
    """``accept_draft`` for a single drafted token (``q`` a point mass): one draw
    from ``p``, kept as the draft when it equals it."""
    token = int(rng.choice(len(p), p=p))
    return token, token == drafted
