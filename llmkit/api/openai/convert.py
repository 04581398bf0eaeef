"""OpenAI's requests read into llmkit's core types: ``from_*`` functions make
``GenerateRequest``s (sampling, stop strings, messages with their tools and
earlier thinking, the legacy ``functions``), and what the answer needs to know
of the request (echo, usage in the stream). Pure: no HTTP, no clock, no
registry. ``replies`` builds the answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from llmkit.api.images import ImageRef, Images
from llmkit.api.openai import logprobs as lp
from llmkit.api.openai import schemas as s
from llmkit.api.openai.reasoning import from_reasoning, message_reasoning
from llmkit.api.tools import check_choice, tool_from_dict
from llmkit.core.types import (
    DEFAULT_SAMPLING,
    GenerateRequest,
    Image,
    Message,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
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


def _content(msg: s.ChatMessage, i: int, images: Images) -> tuple[str, tuple[Image, ...]]:
    """A message's text, and its images in order (a user message's only)."""
    if msg.content is None:
        return "", ()
    if isinstance(msg.content, str):
        return msg.content, ()
    texts, seen = [], []
    for j, part in enumerate(msg.content):
        if isinstance(part, s.TextPart):
            texts.append(part.text)
        elif isinstance(part, s.ImagePart):
            param = f"messages.{i}.content.{j}"
            if msg.role != "user":
                raise InvalidRequestError(
                    f"Images go in user messages; messages.{i} is a {msg.role} message.",
                    param=param,
                )
            ref = ImageRef(part.image_url.url, f"{param}.image_url.url")
            seen.append(images.get(ref, part.image_url.detail))
        else:
            raise InvalidRequestError(
                f"Content parts of type '{part.type}' are not supported; send text and "
                "image_url parts.",
                param=f"messages.{i}.content",
            )
    return "".join(texts), tuple(seen)


def _message(m: s.ChatMessage, i: int, images: Images) -> Message:
    calls = [
        ToolCall(c.id, c.function.name or "", c.function.arguments or "{}")
        for c in m.tool_calls or ()
    ]
    if m.function_call is not None:  # legacy: one call, no id
        fc = m.function_call
        calls.append(ToolCall(f"call_{i}", fc.name or "", fc.arguments or "{}"))
    text, seen = _content(m, i, images)
    return Message(
        role=_ROLES.get(m.role, m.role),  # type: ignore[arg-type]
        content=text,
        tool_calls=tuple(calls),
        tool_call_id=m.tool_call_id,
        reasoning=message_reasoning(m) if m.role == "assistant" else "",
        images=seen,
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


def from_chat_request(
    req: s.ChatCompletionRequest, images: Images | None = None, *, index: int = 0
) -> GenerateRequest:
    """The engine request for choice ``index``; ``images``: the request's images as
    ``api.images.read_images`` read them (a converter called alone decodes its own)."""
    images = images if images is not None else Images()
    messages = tuple(_message(m, i, images) for i, m in enumerate(req.messages))
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
        speculative=req.speculative,
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
        speculative=req.speculative,
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
