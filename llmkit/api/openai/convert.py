"""Pure translations between OpenAI wire models and llmkit's core types.

``from_*`` functions read a request into ``GenerateRequest``s; ``to_*`` functions
build responses, stream events and model listings from core ``Chunk``s and plain
values. No HTTP, no clock, no registry here: the route stamps the id and the
time (``Head``) and hands in what it read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, replace

from llmkit.api.models_view import ModelView
from llmkit.api.openai import logprobs as lp
from llmkit.api.openai import schemas as s
from llmkit.api.openai.reasoning import from_reasoning, message_reasoning
from llmkit.api.tools import check_choice, tool_from_dict
from llmkit.core.tools import join_calls
from llmkit.core.types import (
    DEFAULT_SAMPLING,
    Chunk,
    GenerateRequest,
    Message,
    SamplingParams,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from llmkit.errors import InvalidRequestError

# OpenAI's documented defaults, for what neither a request nor its model's Modelfile sets.
DEFAULT_TEMPERATURE = 1.0
DEFAULTS = replace(DEFAULT_SAMPLING, temperature=DEFAULT_TEMPERATURE)
_ROLES = {"developer": "system"}


def _sampling(req: s.SamplingFields, *, index: int = 0) -> SamplingParams:
    """What the request sets; a null field is left to the model, then to ``DEFAULTS``."""
    bias: tuple[tuple[int, float], ...] = ()
    if req.logit_bias:
        try:
            bias = tuple((int(k), float(v)) for k, v in req.logit_bias.items())
        except ValueError as e:
            raise InvalidRequestError(
                "logit_bias keys must be token ids (integers as strings).", param="logit_bias"
            ) from e
    return SamplingParams(
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        # Each of n choices gets its own seed so they differ, yet repeat with the seed.
        seed=None if req.seed is None else req.seed + index,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repetition_penalty or None,  # 0 is no penalty: unset
        logit_bias=bias,
    )


def _stop(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _content(msg: s.ChatMessage, i: int) -> str:
    if msg.content is None:
        return ""
    if isinstance(msg.content, str):
        return msg.content
    texts = []
    for part in msg.content:
        if not isinstance(part, s.TextPart):
            raise InvalidRequestError(
                f"Content parts of type '{part.type}' are not supported by this model; "
                "send text parts only.",
                param=f"messages.{i}.content",
            )
        texts.append(part.text)
    return "".join(texts)


def _message(m: s.ChatMessage, i: int) -> Message:
    calls = [
        ToolCall(c.id, c.function.name or "", c.function.arguments or "{}")
        for c in m.tool_calls or ()
    ]
    if m.function_call is not None:  # legacy: one call, no id
        fc = m.function_call
        calls.append(ToolCall(f"call_{i}", fc.name or "", fc.arguments or "{}"))
    return Message(
        role=_ROLES.get(m.role, m.role),  # type: ignore[arg-type]
        content=_content(m, i),
        tool_calls=tuple(calls),
        tool_call_id=m.tool_call_id,
        reasoning=message_reasoning(m) if m.role == "assistant" else "",
    )


@dataclass(frozen=True)
class ToolsAsked:
    """What a request says about tools, read once for all its choices."""

    tools: tuple[Tool, ...] = ()
    choice: ToolChoice = "auto"
    name: str | None = None
    parallel: bool = True


def from_tools(req: s.ChatCompletionRequest) -> ToolsAsked:
    """``tools`` / ``tool_choice`` / ``parallel_tool_calls``, or their legacy
    spelling ``functions`` / ``function_call`` (one call at most), checked."""
    if req.functions and not req.tools:
        tools = tuple(
            tool_from_dict(f.model_dump(exclude_none=True), f"functions.{i}")
            for i, f in enumerate(req.functions)
        )
        field, wanted, parallel = "function_call", req.function_call, False
    else:
        tools = tuple(
            tool_from_dict(t.function.model_dump(exclude_none=True), f"tools.{i}.function")
            for i, t in enumerate(req.tools or ())
        )
        field, wanted = "tool_choice", req.tool_choice
        parallel = req.parallel_tool_calls is not False
    if wanted is None or isinstance(wanted, str):
        choice, name = wanted or "auto", None
    else:
        choice = "required"
        name = wanted.name if isinstance(wanted, s.FunctionName) else wanted.function.name
    check_choice(tools, choice, name, field)  # type: ignore[arg-type]
    return ToolsAsked(tools, choice, name, parallel)  # type: ignore[arg-type]


def is_legacy(req: s.ChatCompletionRequest) -> bool:
    """Asked with ``functions``: answered with ``function_call``, as then."""
    return bool(req.functions) and not req.tools


def from_chat_request(req: s.ChatCompletionRequest, *, index: int = 0) -> GenerateRequest:
    messages = tuple(_message(m, i) for i, m in enumerate(req.messages))
    asked = from_tools(req)
    think, effort, _ = from_reasoning(req)
    sampling = _sampling(req, index=index)
    fmt = req.response_format
    if fmt is not None and fmt.type != "text":
        schema = None
        if fmt.type == "json_schema":
            if not fmt.json_schema or "schema" not in fmt.json_schema:
                raise InvalidRequestError(
                    "response_format json_schema needs json_schema.schema.",
                    param="response_format",
                )
            schema = json.dumps(fmt.json_schema["schema"])
        sampling = replace(sampling, response_format="json", json_schema=schema)
    return GenerateRequest(
        messages=messages,
        sampling=sampling,
        defaults=DEFAULTS,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        stop=_stop(req.stop),
        ignore_eos=req.ignore_eos,
        tools=asked.tools,
        tool_choice=asked.choice,
        tool_name=asked.name,
        parallel_tool_calls=asked.parallel,
        logprobs=lp.from_chat(req),
        think=think,
        effort=effort,
    )


def completion_prompts(req: s.CompletionRequest) -> list[str | tuple[int, ...]]:
    """The prompts of a completion request: one string, strings, token ids, or lists of them."""
    p = req.prompt
    if isinstance(p, str):
        return [p]
    if not p:
        raise InvalidRequestError("The prompt is empty.", param="prompt")
    if all(isinstance(x, int) for x in p):
        return [tuple(p)]  # type: ignore[arg-type]
    return [x if isinstance(x, str) else tuple(x) for x in p]  # type: ignore[misc]


def from_completion_request(
    req: s.CompletionRequest, prompt: str | tuple[int, ...], *, index: int = 0
) -> GenerateRequest:
    if req.suffix:
        raise InvalidRequestError("suffix (fill-in-the-middle) is not supported.", param="suffix")
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise InvalidRequestError("best_of other than n is not supported.", param="best_of")
    return GenerateRequest(
        prompt=prompt,
        sampling=_sampling(req, index=index),
        defaults=DEFAULTS,
        max_tokens=req.max_tokens,
        stop=_stop(req.stop),
        ignore_eos=req.ignore_eos,
        logprobs=lp.from_completion(req),
    )


def completion_echo(req: s.CompletionRequest, prompts: list[str | tuple[int, ...]]) -> list[str]:
    """Per generation (prompt by prompt, ``n`` each), the text its output starts
    with: its prompt with ``echo``. Token-id prompts echo nothing, as before."""
    n = req.n or 1
    return [p if req.echo and isinstance(p, str) else "" for p in prompts for _ in range(n)]


def include_usage(req: s.SamplingFields) -> bool:
    """Whether a stream ends with a usage event (and its chunks carry ``usage: null``)."""
    return bool(req.stream_options and req.stream_options.include_usage)


# -- responses ------------------------------------------------------------------


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
