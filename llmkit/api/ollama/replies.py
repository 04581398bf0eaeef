"""Ollama's answers, built from core chunks: the lines of a stream, the whole
answer, and what an empty prompt gets (the model loaded).

Each line carries what its chunk said (``Said``): the answer's text, the
thinking apart from it (``message.thinking`` in a chat, ``thinking`` in a
generate, left out when there is none, as Ollama does), the calls and the
log-probabilities. No HTTP, no clock here: the route reads the clocks
(``Timing``, ``Stamped``) and hands them in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from llmkit.api.logprobs import token_text
from llmkit.api.ollama import schemas as s
from llmkit.core.tools import join_calls
from llmkit.core.types import Chunk, Logprob, ToolCall, ToolCallDelta


@dataclass(frozen=True)
class Timing:
    """Readings of one request on a monotonic nanosecond clock, for Ollama's durations."""

    start: int  # the request came in
    first: int  # the first chunk was out: the prompt had been read
    load: int = 0  # time the request waited for its model to load


@dataclass(frozen=True)
class Stamped:
    """A chunk and when it arrived: ``ns`` on ``Timing``'s clock, ``at`` on the
    wall clock (Ollama stamps every line with ``created_at``)."""

    chunk: Chunk
    ns: int
    at: datetime


def rfc3339(at: datetime) -> str:
    """As Ollama writes ``created_at``: UTC, microseconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _metrics(model: str, last: Stamped, timing: Timing) -> dict[str, Any]:
    """The closing fields, from the chunk that ended the generation."""
    end, usage = last.ns, last.chunk.usage
    first = timing.first or end
    return {
        "model": model,
        "created_at": rfc3339(last.at),
        # Ollama ends a reply that called tools with "stop" too.
        "done_reason": "length" if last.chunk.finish_reason == "length" else "stop",
        "total_duration": end - timing.start,
        "load_duration": timing.load,
        "prompt_eval_count": usage.prompt_tokens if usage else 0,  # the whole prompt, as Ollama
        # of which read from the KV cache: Ollama's prompt_eval_cached_count, left out at 0
        "prompt_eval_cached_count": (usage.cached_tokens or None) if usage else None,
        "prompt_eval_duration": max(0, first - timing.start - timing.load),
        "eval_count": usage.completion_tokens if usage else 0,
        "eval_duration": end - first,
    }


def _logprobs_out(entries: list[Logprob] | tuple[Logprob, ...]) -> list[s.Logprob] | None:
    """Ollama's entries (left out, not empty, when there are none)."""

    def one(e: Logprob) -> s.TokenLogprob:
        return s.TokenLogprob(token=token_text(e.piece), logprob=e.logprob, bytes=list(e.piece))

    return [
        s.Logprob(**one(e).model_dump(), top_logprobs=[one(t) for t in e.top] or None)
        for e in entries
    ] or None


Scored = list[s.Logprob] | None


@dataclass(frozen=True)
class Said:
    """What one line carries (the whole answer's, on the last of a whole answer)."""

    text: str = ""
    thinking: str = ""
    calls: list[ToolCall] | None = None
    scored: Scored = None


def _message(said: Said) -> s.ResponseMessage:
    return s.ResponseMessage(
        content=said.text,
        thinking=said.thinking or None,
        tool_calls=[
            s.ToolCall(
                id=c.id,
                function=s.CalledFunction(name=c.name, arguments=json.loads(c.arguments_json)),
            )
            for c in said.calls or ()
        ]
        or None,
    )


# Chat and generate answers differ only in where the text goes (and generate's
# ``context``), so each is a pair of builders over one loop: a piece (time
# stamp, what it said), and the end (metrics, what the reply said, the reply's
# token ids). Generate has no calls: it never offers tools.
Line = TypeVar("Line", s.ChatResponse, s.GenerateResponse)
Done = TypeVar("Done", s.ChatDoneResponse, s.GenerateDoneResponse)
PieceFn = Callable[[str, Said], Line]
DoneFn = Callable[[dict[str, Any], Said, list[int]], Done]


async def _lines(
    stamped: AsyncIterable[Stamped],
    piece: PieceFn[Line],
    done: DoneFn[Done],
    model: str,
    timing: Timing,
) -> AsyncIterator[Line | Done]:
    ids: list[int] = []
    async for st in stamped:
        ids.extend(st.chunk.token_ids)
        # The engines hand on each call whole, in one chunk: a line of its own, as Ollama's.
        c = st.chunk
        calls = join_calls(c.tool_calls)
        if c.text or c.reasoning or calls or c.logprobs:
            said = Said(c.text, c.reasoning, calls, _logprobs_out(c.logprobs))
            yield piece(rfc3339(st.at), said)
        if c.finish_reason:
            yield done(_metrics(model, st, timing), Said(), ids)


async def _whole(
    stamped: AsyncIterable[Stamped], done: DoneFn[Done], model: str, timing: Timing
) -> Done:
    texts: list[str] = []
    thought: list[str] = []
    ids: list[int] = []
    deltas: list[ToolCallDelta] = []
    scored: list[Logprob] = []
    last: Stamped | None = None
    async for st in stamped:
        texts.append(st.chunk.text)
        thought.append(st.chunk.reasoning)
        ids.extend(st.chunk.token_ids)
        deltas.extend(st.chunk.tool_calls)
        scored.extend(st.chunk.logprobs)
        # A stream cut short has no final chunk: its numbers are unknown, not the
        # last piece's.
        last = st if st.chunk.finish_reason else Stamped(Chunk(), st.ns, st.at)
    if last is None:
        raise ValueError("a generation yields at least its final chunk")
    metrics = _metrics(model, last, timing)
    said = Said("".join(texts), "".join(thought), join_calls(deltas), _logprobs_out(scored))
    return done(metrics, said, ids)


def _chat(model: str) -> tuple[PieceFn[s.ChatResponse], DoneFn[s.ChatDoneResponse]]:
    def piece(at: str, said: Said) -> s.ChatResponse:
        message = _message(said)
        return s.ChatResponse(model=model, created_at=at, message=message, logprobs=said.scored)

    def done(metrics: dict[str, Any], said: Said, ids: list[int]) -> s.ChatDoneResponse:
        return s.ChatDoneResponse(**metrics, message=_message(said), logprobs=said.scored)

    return piece, done


def _generate(
    model: str, prompt_ids: list[int] | None
) -> tuple[PieceFn[s.GenerateResponse], DoneFn[s.GenerateDoneResponse]]:
    def piece(at: str, said: Said) -> s.GenerateResponse:
        return s.GenerateResponse(
            model=model,
            created_at=at,
            response=said.text,
            thinking=said.thinking or None,
            logprobs=said.scored,
        )

    def done(metrics: dict[str, Any], said: Said, ids: list[int]) -> s.GenerateDoneResponse:
        # Ollama hands back the conversation so far (prompt, then reply) as token
        # ids; the next request sends them as ``context`` to continue it.
        context = None if prompt_ids is None else prompt_ids + ids
        return s.GenerateDoneResponse(
            **metrics,
            response=said.text,
            thinking=said.thinking or None,
            context=context,
            logprobs=said.scored,
        )

    return piece, done


def to_chat_lines(
    model: str, timing: Timing, stamped: AsyncIterable[Stamped]
) -> AsyncIterator[s.ChatResponse | s.ChatDoneResponse]:
    """A chat stream: a line per piece of text or thinking, then the metrics with
    empty content."""
    piece, done = _chat(model)
    return _lines(stamped, piece, done, model, timing)


async def to_chat_response(
    model: str, timing: Timing, stamped: AsyncIterable[Stamped]
) -> s.ChatDoneResponse:
    """A chat answered in one object (``stream: false``)."""
    return await _whole(stamped, _chat(model)[1], model, timing)


def to_generate_lines(
    model: str, timing: Timing, stamped: AsyncIterable[Stamped], prompt_ids: list[int] | None
) -> AsyncIterator[s.GenerateResponse | s.GenerateDoneResponse]:
    """A generate stream; ``prompt_ids``: the prompt as token ids, None when unknown."""
    piece, done = _generate(model, prompt_ids)
    return _lines(stamped, piece, done, model, timing)


async def to_generate_response(
    model: str, timing: Timing, stamped: AsyncIterable[Stamped], prompt_ids: list[int] | None
) -> s.GenerateDoneResponse:
    """A generate answered in one object (``stream: false``)."""
    return await _whole(stamped, _generate(model, prompt_ids)[1], model, timing)


def to_load_answer(
    model: str, *, chat: bool, unload: bool, now: datetime
) -> s.ChatLoadResponse | s.GenerateLoadResponse:
    """What Ollama answers to an empty prompt: the model is (already) loaded."""
    kind = s.ChatLoadResponse if chat else s.GenerateLoadResponse
    return kind(model=model, created_at=rfc3339(now), done_reason="unload" if unload else "load")


def to_ndjson_line(obj: BaseModel) -> str:
    """One line of an NDJSON stream, non-ASCII text as it is (as Ollama sends it)."""
    return json.dumps(obj.model_dump(), ensure_ascii=False) + "\n"
