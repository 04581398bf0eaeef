"""CPU work a request brings (its chat template, tool prompt, tokens, JSON-schema
grammar), run beside the event loop and within a time budget.

The event loop must stay free for every other request (``/health`` included),
so the work runs in a worker thread. A thread cannot be stopped, so the budget
cannot stop it either; what it does is answer the client: past the budget the
request is refused with a 400 that says what to send less of, and the work's
result, when it comes, is handed to ``discard`` (a sampler holds C memory). The
limits at the door (``api.limits``) keep such work small; this is the backstop
for whatever slips through them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from llmkit.errors import InvalidRequestError

T = TypeVar("T")

#: Seconds a request's preparation may take once a thread runs it.
PREPARE_BUDGET_S = 10.0
_POLL_S = 0.05  # while the work waits for a free thread


async def within_budget(
    work: Callable[[], T],
    *,
    budget: float = PREPARE_BUDGET_S,
    discard: Callable[[T], None] | None = None,
) -> T:
    """``work()`` in a worker thread; a 400 once it has run ``budget`` seconds
    (counted from when a thread starts it, not while it queues). Its result is
    given to ``discard`` when nobody waits for it any more (over budget, or the
    caller cancelled)."""
    started: list[float] = []

    def timed() -> T:
        started.append(time.monotonic())
        return work()

    future = asyncio.get_running_loop().run_in_executor(None, timed)
    try:
        while True:
            left = started[0] + budget - time.monotonic() if started else _POLL_S
            done, _ = await asyncio.wait({future}, timeout=max(left, 0.0))
            if done:
                return future.result()
            if started and time.monotonic() - started[0] >= budget:
                raise InvalidRequestError(
                    f"Preparing this request (its prompt, tools and JSON schema) took over "
                    f"{budget:g} s; send a smaller schema, fewer tools or fewer messages."
                )
    except BaseException:
        if discard is not None and not future.done():
            future.add_done_callback(lambda f: _discard(f, discard))
        raise


def _discard(future: asyncio.Future[T], discard: Callable[[T], None]) -> None:
    if not future.cancelled() and future.exception() is None:
        discard(future.result())
