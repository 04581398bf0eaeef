"""Anthropic's Messages API as the client speaks it: a core ``GenerateRequest`` as
the body of ``POST /v1/messages`` (always streamed). Pure functions, no I/O;
``client.stream`` reads the events back.

Anthropic's dialect is used only when named (``anthropic://HOST:PORT``, or
``dialect="anthropic"``): its ``/v1/models`` looks like OpenAI's, so asking
cannot tell them apart. Its system prompt is a field of its own, tool results
are user turns, ``max_tokens`` is required, and a reasoning model's thinking is
asked for with ``thinking: {"type": "enabled", "budget_tokens": N}``. An
assistant turn's own thinking goes back as a ``thinking`` block only where the
turn carries some (``Message.reasoning``); Anthropic's own API checks such
blocks' signatures, which a thinking from elsewhere has not got (empty), so
``Chat`` sends none back by default.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from llmkit.core.images import to_base64
from llmkit.core.types import Effort, GenerateRequest, Message, Tool
from llmkit.errors import InvalidRequestError

VERSION = "2023-06-01"  # the ``anthropic-version`` header every request carries
# The answer's share of ``max_tokens`` when the caller gives none (Anthropic requires
# one); thinking's budget is added to it, as ``max_tokens`` counts both.
DEFAULT_ANSWER_TOKENS = 1024
# A thinking budget per effort level, where the request names no budget (1024 is
# the least Anthropic takes).
BUDGETS: dict[Effort, int] = {"low": 1024, "medium": 4096, "high": 16384}

Body = dict[str, Any]


def to_anthropic(
    model: str, req: GenerateRequest, *, send: Collection[str] | None = None
) -> tuple[str, Body]:
    """The Anthropic request for ``req``: path and body."""
    s = req.sampling
    if req.messages is None:
        raise InvalidRequestError(
            "This model's (Anthropic) server has no raw text completion; send chat messages.",
            param="prompt",
        )
    for given, name in ((req.logprobs is not None, "logprobs"), (bool(s.logit_bias), "logit_bias"),
                        (s.response_format == "json", "response_format")):  # fmt: skip
        if given:
            raise InvalidRequestError(
                f"{name} is not supported by this model's (Anthropic) server.", param=name
            )
    thinking = req.think is True or (req.think is None and req.effort is not None)
    budget = req.reasoning_budget or BUDGETS[req.effort or "medium"]
    answer = DEFAULT_ANSWER_TOKENS + (budget if thinking else 0)
    body: Body = {"model": model, "stream": True, "max_tokens": req.max_tokens or answer}
    system = "\n\n".join(m.content for m in req.messages if m.role == "system")
    if system:
        body["system"] = system
    body["messages"] = _messages([m for m in req.messages if m.role != "system"])
    sampling = {
        "temperature": s.temperature,
        "top_p": s.top_p if s.top_p != 1.0 else None,
        "top_k": s.top_k or None,
    }
    body.update(
        {k: v for k, v in sampling.items() if v is not None and (send is None or k in send)}
    )
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if thinking:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif req.think is False:
        body["thinking"] = {"type": "disabled"}
    if req.offers_tools:
        body["tools"] = [_tool(t) for t in req.tools]
        choice: Body = {"type": "auto"}
        if req.tool_choice == "required":
            choice = {"type": "tool", "name": req.tool_name} if req.tool_name else {"type": "any"}
        if not req.parallel_tool_calls:
            choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = choice
    return "/v1/messages", body


def _tool(t: Tool) -> Body:
    out: Body = {"name": t.name, "input_schema": json.loads(t.parameters_json)}
    if t.description:
        out["description"] = t.description
    return out


def _messages(messages: list[Message]) -> list[Body]:
    """User and assistant turns; tool results are user turns of ``tool_result``
    blocks (those that follow one another in one turn, as Anthropic wants them)."""
    out: list[Body] = []
    for m in messages:
        if m.role == "tool":
            result = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = out[-1] if out else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
        elif m.role == "assistant":
            out.append({"role": "assistant", "content": _assistant(m)})
        elif m.images:  # images first, as Anthropic's docs advise and templates place them
            blocks: list[Body] = [
                {"type": "image", "source": {"type": "base64", "media_type": i.mime,
                                             "data": to_base64(i)}}
                for i in m.images
            ]  # fmt: skip
            out.append({"role": "user", "content": blocks + _text_block(m.content)})
        else:
            out.append({"role": "user", "content": m.content})
    return out


def _text_block(text: str) -> list[Body]:
    return [{"type": "text", "text": text}] if text else []


def _assistant(m: Message) -> str | list[Body]:
    if not m.reasoning and not m.tool_calls:
        return m.content
    blocks: list[Body] = []
    if m.reasoning:
        blocks.append({"type": "thinking", "thinking": m.reasoning, "signature": ""})
    if m.content:
        blocks.append({"type": "text", "text": m.content})
    for c in m.tool_calls:
        args = json.loads(c.arguments_json or "{}")
        blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": args})
    return blocks
