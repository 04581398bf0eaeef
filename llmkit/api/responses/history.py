"""What a response sends to the model: its ancestors' turns and its own input,
fitted to the context with the conversation's memory strategy.

A chain of responses grows without end, a context does not: instead of a
context-length error, the oldest exchanges are dropped (``memory.strategies``,
counted with the served model's own tokenizer and chat template). Every system
and developer message of the history joins the request's ``instructions`` in
one system message at the top, where every chat template accepts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from llmkit.core.types import GenerateRequest, Message, Tool
from llmkit.engines.base import Engine
from llmkit.errors import InvalidRequestError
from llmkit.memory import strategies as st


def reply_budget(context: int, max_output_tokens: int | None) -> int:
    """Tokens kept for the reply when fitting: the asked maximum, or what ``Chat`` keeps."""
    return max_output_tokens or min(1024, context // 4)


async def fit(
    engine: Engine,
    messages: Sequence[Message],
    *,
    instructions: str | None,
    strategy: st.Strategy,
    tools: tuple[Tool, ...] = (),
    max_output_tokens: int | None = None,
) -> tuple[Message, ...]:
    """``messages`` (the history, then the new input) as they are sent."""
    system = "\n\n".join(
        t for t in [instructions or "", *(m.content for m in messages if m.role == "system")] if t
    )
    rest = [m for m in messages if m.role != "system"]
    users = [i for i, m in enumerate(rest) if m.role == "user"]
    if not users:  # nothing to cut between: sent as it is
        return tuple(([Message("system", system)] if system else []) + rest)
    # The last exchange may go on past its user message (calls, their outputs): it
    # is always sent whole, and counted with whatever is cut before it.
    upto, tail = rest[: users[-1] + 1], rest[users[-1] + 1 :]
    loop = asyncio.get_running_loop()

    def count(ms: Sequence[Message]) -> int:
        req = GenerateRequest(messages=(*ms, *tail), tools=tools)
        ids = asyncio.run_coroutine_threadsafe(engine.encode(req), loop).result()
        return st.estimate_tokens([*ms, *tail]) if ids is None else len(ids)

    budget = engine.context_length - reply_budget(engine.context_length, max_output_tokens)
    try:
        chosen = await asyncio.to_thread(
            st.select_messages,
            strategy,
            system=system or None,
            history=upto,
            budget=budget,
            count_tokens=count,
        )
    except InvalidRequestError as e:
        raise InvalidRequestError(e.message, param="input") from None
    return (*chosen, *tail)
