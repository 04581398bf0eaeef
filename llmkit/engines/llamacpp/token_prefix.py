"""How far two token lists agree, the question every prefix cache asks."""

from __future__ import annotations


def common_prefix(a: list[int], b: list[int], offset: int = 0) -> int:
    """How many leading tokens of ``a`` equal ``b[offset:]``'s."""
    n = min(len(a), len(b) - offset)
    if n <= 0 or a[0] != b[offset]:
        return 0
    if a[:n] == b[offset : offset + n]:  # the usual case, at C speed
        return n
    lo, hi = 0, n  # a[:lo] matches, a[:hi] does not: bisect with slice compares
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[offset : offset + mid]:
            lo = mid
        else:
            hi = mid
    return lo
