"""Pure translations between OpenAI wire models and llmkit's core types.

``from_*`` functions read a request into a ``GenerateRequest``; ``to_*`` functions
build responses and stream chunks from core ``Chunk``s. No HTTP here.
"""

from __future__ import annotations

import json
from dataclasses import replace

from llmkit.api.openai import schemas as s
from llmkit.core.types import Chunk, GenerateRequest, Message, SamplingParams, Usage
from llmkit.errors import InvalidRequestError

# OpenAI's documented defaults; a null field means the default.
DEFAULT_TEMPERATURE = 1.0
_ROLES = {"developer": "system"}


def _sampling(req: s.SamplingFields, *, index: int = 0) -> SamplingParams:
    bias: tuple[tuple[int, float], ...] = ()
    if req.logit_bias:
        try:
            bias = tuple((int(k), float(v)) for k, v in req.logit_bias.items())
        except ValueError as e:
            raise InvalidRequestError(
                "logit_bias keys must be token ids (integers as strings).", param="logit_bias"
            ) from e
    return SamplingParams(
        temperature=DEFAULT_TEMPERATURE if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        min_p=req.min_p or 0.0,
        # Each of n choices gets its own seed so they differ, yet repeat with the seed.
        seed=None if req.seed is None else req.seed + index,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        repeat_penalty=req.repetition_penalty or 1.0,
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


def from_chat_request(req: s.ChatCompletionRequest, *, index: int = 0) -> GenerateRequest:
    _refuse_logprobs(req.logprobs)
    messages = tuple(
        Message(role=_ROLES.get(m.role, m.role), content=_content(m, i))  # type: ignore[arg-type]
        for i, m in enumerate(req.messages)
    )
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
        max_tokens=req.max_completion_tokens or req.max_tokens,
        stop=_stop(req.stop),
        ignore_eos=req.ignore_eos,
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
    _refuse_logprobs(req.logprobs)
    if req.suffix:
        raise InvalidRequestError("suffix (fill-in-the-middle) is not supported.", param="suffix")
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise InvalidRequestError("best_of other than n is not supported.", param="best_of")
    return GenerateRequest(
        prompt=prompt,
        sampling=_sampling(req, index=index),
        max_tokens=req.max_tokens,
        stop=_stop(req.stop),
        ignore_eos=req.ignore_eos,
    )


def _refuse_logprobs(logprobs: bool | int | None) -> None:
    if logprobs:
        raise InvalidRequestError("logprobs are not supported yet.", param="logprobs")


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
    )


def to_chat_completion(
    rid: str, created: int, model: str, results: list[tuple[str, Chunk]]
) -> s.ChatCompletion:
    """``results``: the full text and the final chunk of each choice, in index order."""
    return s.ChatCompletion(
        id=rid,
        created=created,
        model=model,
        choices=[
            s.ChatChoice(
                index=i,
                message=s.AssistantMessage(content=text),
                finish_reason=last.finish_reason or "stop",
            )
            for i, (text, last) in enumerate(results)
        ],
        usage=to_usage(_prompt_once([last.usage for _, last in results])),
    )


def to_chat_chunk(
    rid: str, created: int, model: str, index: int, chunk: Chunk | None
) -> s.ChatCompletionChunk:
    """One stream event for choice ``index``; ``chunk=None`` is the opening role event."""
    if chunk is None:
        delta = s.ChoiceDelta(role="assistant", content="")
        reason = None
    else:
        delta = s.ChoiceDelta(content=chunk.text or None)
        reason = chunk.finish_reason
    return s.ChatCompletionChunk(
        id=rid,
        created=created,
        model=model,
        choices=[s.ChatChunkChoice(index=index, delta=delta, finish_reason=reason)],
        usage=None,
    )


def to_chat_usage_chunk(
    rid: str, created: int, model: str, usages: list[Usage]
) -> s.ChatCompletionChunk:
    return s.ChatCompletionChunk(
        id=rid, created=created, model=model, choices=[], usage=to_usage(_prompt_once(usages))
    )


def to_completion(
    rid: str, created: int, model: str, results: list[tuple[str, Chunk]]
) -> s.Completion:
    return s.Completion(
        id=rid,
        created=created,
        model=model,
        choices=[
            s.CompletionChoice(index=i, text=text, finish_reason=last.finish_reason or "stop")
            for i, (text, last) in enumerate(results)
        ],
        usage=to_usage([last.usage for _, last in results if last.usage]),
    )


def to_completion_chunk(
    rid: str, created: int, model: str, index: int, chunk: Chunk
) -> s.Completion:
    return s.Completion(
        id=rid,
        created=created,
        model=model,
        choices=[
            s.CompletionChoice(index=index, text=chunk.text, finish_reason=chunk.finish_reason)
        ],
    )


def _prompt_once(usages: list[Usage | None]) -> list[Usage]:
    """n choices of one chat share one prompt: count its tokens once, as OpenAI bills."""
    real = [u for u in usages if u is not None]
    if not real:
        return []
    first, rest = real[0], real[1:]
    return [first, *(Usage(0, u.completion_tokens) for u in rest)]  # cached: counted once too
