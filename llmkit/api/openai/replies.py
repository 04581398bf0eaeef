"""OpenAI's answers, from core's chunks: a chat completion or a completion, whole
or as the stream's chunks and their SSE data, usage as OpenAI bills it (a prompt
shared by n choices counted once), and the model listings. ``convert`` reads
the requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from llmkit.api.models_view import ModelView
from llmkit.api.openai import logprobs as lp
from llmkit.api.openai import schemas as s
from llmkit.core.tools import join_calls
from llmkit.core.types import (
    Chunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)

# OpenAI's documented defaults, for what neither a request nor its model's Modelfile sets.
# -- answers ------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """What every object of one answer carries: OpenAI stamps one id and one
    ``created`` on every chunk of a stream, and ``model`` is the name asked for."""

    id: str
    created: int
    model: str


def to_usage(usages: list[Usage]) -> s.UsageInfo:
    prompt = sum(u.prompt_tokens for u in usages)
    completion = sum(u.completion_tokens for u in usages)
    return s.UsageInfo(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=s.PromptTokensDetails(
            cached_tokens=sum(u.cached_tokens for u in usages)
        ),
        completion_tokens_details=s.CompletionTokensDetails(
            reasoning_tokens=sum(u.reasoning_tokens for u in usages)
        ),
    )


def _function(c: ToolCall) -> s.FunctionCall:
    return s.FunctionCall(name=c.name, arguments=c.arguments_json)


def _choice(i: int, text: str, last: Chunk, legacy: bool, logprobs: bool) -> s.ChatChoice:
    choice = _said(i, text, last, legacy)
    if logprobs:
        choice.logprobs = lp.to_chat(last.logprobs)
    return choice


def _said(i: int, text: str, last: Chunk, legacy: bool) -> s.ChatChoice:
    reason: s.FinishReason = last.finish_reason or "stop"
    calls = join_calls(last.tool_calls)
    thought = last.reasoning or None  # the whole thinking (``collect``); absent when none
    if not calls:
        message = s.AssistantMessage(content=text, reasoning_content=thought)
        return s.ChatChoice(index=i, message=message, finish_reason=reason)
    said = text or None  # a reply that only calls has null content, as OpenAI's
    if legacy:
        message = s.AssistantMessage(
            content=said, function_call=_function(calls[0]), reasoning_content=thought
        )
        reason = "function_call" if reason == "tool_calls" else reason
    else:
        message = s.AssistantMessage(
            content=said,
            reasoning_content=thought,
            tool_calls=[
                s.ToolCall(
                    id=c.id, function=s.FunctionCall(name=c.name, arguments=c.arguments_json)
                )
                for c in calls
            ],
        )
    return s.ChatChoice(index=i, message=message, finish_reason=reason)


def to_chat_completion(
    head: Head, results: list[tuple[str, Chunk]], *, legacy: bool = False, logprobs: bool = False
) -> s.ChatCompletion:
    """``results``: the full text and the final chunk of each choice, in index order
    (the final chunk holding all the choice's tool-call deltas and log-probabilities,
    as ``collect`` gives). ``legacy``: calls go in ``function_call`` (``is_legacy``);
    ``logprobs``: they were asked for."""
    return s.ChatCompletion(
        id=head.id,
        created=head.created,
        model=head.model,
        choices=[
            _choice(i, text, last, legacy, logprobs) for i, (text, last) in enumerate(results)
        ],
        usage=to_usage(_prompt_once([last.usage for _, last in results])),
    )


def _call_delta(d: ToolCallDelta, legacy: bool) -> s.ChoiceDelta:
    fn = s.FunctionCall(name=d.name, arguments=d.arguments if d.name is None else "")
    if legacy:
        return s.ChoiceDelta(function_call=fn)
    first = d.id is not None
    chunk = s.ToolCallChunk(index=d.index, id=d.id, type="function" if first else None, function=fn)
    return s.ChoiceDelta(tool_calls=[chunk])


def to_completion(
    head: Head, results: list[tuple[str, Chunk]], echo: list[str], *, logprobs: bool = False
) -> s.Completion:
    """``echo``: per choice, what its text starts with (``completion_echo``)."""
    return s.Completion(
        id=head.id,
        created=head.created,
        model=head.model,
        choices=[
            s.CompletionChoice(
                index=i,
                text=e + text,
                finish_reason=last.finish_reason or "stop",
                logprobs=lp.CompletionOffsets().to_completion(last.logprobs) if logprobs else None,
            )
            for i, (e, (text, last)) in enumerate(zip(echo, results, strict=True))
        ],
        usage=to_usage([last.usage for _, last in results if last.usage]),
    )


async def to_chat_chunks(
    head: Head,
    stream: AsyncIterable[tuple[int, Chunk]],
    *,
    n: int,
    include_usage: bool,
    legacy: bool = False,
    logprobs: bool = False,
) -> AsyncIterator[s.ChatCompletionChunk]:
    """The events of a chat stream: each choice opens with its role, then a delta
    per chunk with text or a finish reason, then (``include_usage``) the usage.
    A call is a delta with its index, id, type and name, then one with its
    arguments; the finish reason then comes in an empty delta of its own.
    Thinking goes in ``reasoning_content`` deltas, before the chunk's text.
    ``logprobs``: each chunk's tokens go with its first event."""

    def event(
        index: int,
        delta: s.ChoiceDelta,
        reason: s.FinishReason | None,
        scored: s.ChoiceLogprobs | None = None,
    ) -> s.ChatCompletionChunk:
        choice = s.ChatChunkChoice(index=index, delta=delta, finish_reason=reason, logprobs=scored)
        return s.ChatCompletionChunk(
            id=head.id, created=head.created, model=head.model, choices=[choice]
        )

    for i in range(n):
        yield event(i, s.ChoiceDelta(role="assistant", content=""), None)
    usages: list[Usage] = []
    async for i, chunk in stream:
        reason: s.FinishReason | None = chunk.finish_reason
        if legacy and reason == "tool_calls":
            reason = "function_call"
        scored = lp.to_chat(chunk.logprobs) if logprobs and chunk.logprobs else None
        if chunk.reasoning:
            yield event(i, s.ChoiceDelta(reasoning_content=chunk.reasoning), None)
        if chunk.tool_calls:
            if chunk.text or scored:
                yield event(i, s.ChoiceDelta(content=chunk.text or None), None, scored)
            for d in chunk.tool_calls:
                yield event(i, _call_delta(d, legacy), None)
            if reason:
                yield event(i, s.ChoiceDelta(), reason)
        elif chunk.text or reason or scored:
            yield event(i, s.ChoiceDelta(content=chunk.text or None), reason, scored)
        if chunk.usage:
            usages.append(chunk.usage)
    if include_usage:
        yield s.ChatCompletionChunk(
            id=head.id,
            created=head.created,
            model=head.model,
            choices=[],
            usage=to_usage(_prompt_once(usages)),
        )


async def to_completion_chunks(
    head: Head,
    stream: AsyncIterable[tuple[int, Chunk]],
    *,
    echo: list[str],
    include_usage: bool,
    logprobs: bool = False,
) -> AsyncIterator[s.Completion]:
    """The events of a completion stream: a text piece per chunk, the echoed
    prompt (``completion_echo``) before a choice's first one, then the usage;
    ``logprobs``: each piece with its tokens'."""

    def event(choices: list[s.CompletionChoice], usage: s.UsageInfo | None) -> s.Completion:
        return s.Completion(
            id=head.id, created=head.created, model=head.model, choices=choices, usage=usage
        )

    before = list(echo)  # emptied once a choice has sent its first piece
    offsets = [lp.CompletionOffsets() for _ in echo]
    usages: list[Usage] = []
    async for i, chunk in stream:
        text, before[i] = before[i] + chunk.text, ""
        if chunk.usage:
            usages.append(chunk.usage)
        if text or chunk.finish_reason or (logprobs and chunk.logprobs):
            choice = s.CompletionChoice(index=i, text=text, finish_reason=chunk.finish_reason)
            if logprobs:
                choice.logprobs = offsets[i].to_completion(chunk.logprobs)
            yield event([choice], None)
    if include_usage:
        yield event([], to_usage(usages))


def to_sse_data(event: s.ChatCompletionChunk | s.Completion, *, include_usage: bool) -> str:
    """One event's ``data:``. Without ``include_usage`` the key is left out, not
    null: clients that never asked for usage should not meet the field."""
    data = event.model_dump()
    if not include_usage:
        data.pop("usage")
    return json.dumps(data, ensure_ascii=False)


def _prompt_once(usages: list[Usage | None]) -> list[Usage]:
    """n choices of one chat share one prompt: count its tokens once, as OpenAI bills."""
    real = [u for u in usages if u is not None]
    if not real:
        return []
    first, rest = real[0], real[1:]
    # cached: counted once too; each choice thought its own
    return [
        first,
        *(Usage(0, u.completion_tokens, reasoning_tokens=u.reasoning_tokens) for u in rest),
    ]


# -- model listings ---------------------------------------------------------------


def to_model_card(name: str, model: ModelView) -> s.ModelCard:
    base = model.info.details.get("base_model")
    return s.ModelCard(
        id=name,
        created=model.created,
        max_model_len=model.context_length,
        parent=str(base) if base else None,
    )


def to_model_list(models: list[ModelView]) -> s.ModelList:
    """Every served name, aliases included, each as a model of its own."""
    return s.ModelList(data=[to_model_card(name, m) for m in models for name in m.names])
