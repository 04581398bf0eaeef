"""Pure translations between Ollama wire models and llmkit's core types.

``from_*`` read a request into a ``GenerateRequest``; ``to_*`` build the response
objects and stream lines (the model listings are in ``listings.py``). Sampling
values a request leaves out come from the model's Modelfile, then Ollama's own
defaults (temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1), so code
written for Ollama gets the replies it is used to.

No HTTP, no clock, no registry here: the route reads the clocks (``Timing``,
``Stamped``, ``now``) and describes the model with a ``ModelView``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from llmkit.api.logprobs import check_range, token_text
from llmkit.api.ollama import schemas as s
from llmkit.api.ollama.template import render_go_template
from llmkit.api.tools import check_choice, tool_from_dict
from llmkit.core.tools import join_calls
from llmkit.core.types import (
    DEFAULT_SAMPLING,
    Chunk,
    GenerateRequest,
    Logprob,
    Message,
    SamplingParams,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from llmkit.errors import InvalidRequestError
from llmkit.models.modelfile import Modelfile

# Ollama's own defaults, for what neither the request nor the model's Modelfile sets.
DEFAULTS = replace(DEFAULT_SAMPLING, top_k=40, top_p=0.9, repeat_penalty=1.1)
MAX_TOP_LOGPROBS = 20  # Ollama's limit


def _sampling(opts: s.Options | None, fmt: s.Format) -> SamplingParams:
    """What the request's options set (None: not set, for the model's Modelfile and
    then ``DEFAULTS`` to fill)."""
    o = opts or s.Options()
    # read with the tools: llmkit's extensions
    unknown = set(o.model_extra or ()) - {"tool_choice", "parallel_tool_calls"}
    if unknown:
        ignored = ", ".join(sorted(unknown))
        s.log.info("ignored options (llmkit sets these at serve time): %s", ignored)
    response_format, schema = "text", None
    if fmt == "json":
        response_format = "json"
    elif isinstance(fmt, dict):
        response_format, schema = "json", json.dumps(fmt)
    return SamplingParams(
        temperature=o.temperature,
        top_p=o.top_p,
        top_k=o.top_k,
        min_p=o.min_p,
        # Ollama's seed -1 (its default) means "random".
        seed=o.seed if o.seed is not None and o.seed >= 0 else None,
        presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty,
        repeat_penalty=o.repeat_penalty,
        repeat_last_n=o.repeat_last_n,
        response_format=response_format,  # type: ignore[arg-type]
        json_schema=schema,
    )


def _max_tokens(opts: s.Options | None) -> int | None:
    n = opts.num_predict if opts else None
    if n is None or n in (-1, -2):  # -1: until the model stops; -2: fill the context
        return None
    if n <= 0:
        raise InvalidRequestError(
            "options.num_predict must be a positive number of tokens, or -1 (no limit).",
            param="options.num_predict",
        )
    return n


def _stop(opts: s.Options | None) -> tuple[str, ...]:
    if opts is None or opts.stop is None:
        return ()
    return (opts.stop,) if isinstance(opts.stop, str) else tuple(opts.stop)


def _refuse_unsupported(req: s.GenerationFields, images: bool) -> None:
    if images:
        raise InvalidRequestError(f"{req.model} does not support images.", param="images")
    if req.think not in (None, False):
        raise InvalidRequestError(f'"{req.model}" does not support thinking.', param="think")


def _logprobs(req: s.GenerationFields) -> int | None:
    """``top_logprobs`` alone asks for them too: alternatives without the token
    they are alternatives to would make no sense."""
    top = check_range(req.top_logprobs or 0, MAX_TOP_LOGPROBS, "top_logprobs")
    return top if req.logprobs or top else None


def _request(req: s.GenerationFields, **what: Any) -> GenerateRequest:
    opts = req.options
    return GenerateRequest(
        sampling=_sampling(opts, req.format),
        defaults=DEFAULTS,
        max_tokens=_max_tokens(opts),
        stop=_stop(opts),
        context_limit=opts.num_ctx if opts else None,
        logprobs=_logprobs(req),
        **what,
    )


def _tool_choice(choice: str | dict[str, Any] | None) -> tuple[ToolChoice, str | None]:
    if choice is None:
        return "auto", None
    if choice in ("auto", "none", "required"):
        return choice, None  # type: ignore[return-value]
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise InvalidRequestError(
            'tool_choice must be "auto", "none", "required" or '
            '{"type": "function", "function": {"name": ...}}.',
            param="tool_choice",
        )
    return "required", name


def _message(m: s.ChatMessage, i: int) -> Message:
    calls = []
    for j, c in enumerate(m.tool_calls or ()):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequestError(
                "A tool call needs function.name.", param=f"messages.{i}.tool_calls.{j}"
            )
        args = fn.get("arguments") or {}
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        calls.append(ToolCall(str(c.get("id") or f"call_{i}_{j}"), fn["name"], text))
    call_id = (m.model_extra or {}).get("tool_call_id")
    return Message(
        role=m.role,
        content=m.content or "",
        tool_calls=tuple(calls),
        tool_call_id=call_id if isinstance(call_id, str) else None,
    )


def from_chat_request(req: s.ChatRequest) -> GenerateRequest:
    _refuse_unsupported(req, any(m.images for m in req.messages))
    tools = tuple(
        tool_from_dict(t.get("function"), f"tools.{i}.function")
        for i, t in enumerate(req.tools or ())
    )
    # Also in ``options``: the one place Ollama's clients pass anything through.
    extra = (req.options.model_extra or {}) if req.options else {}
    choice, name = _tool_choice(req.tool_choice or extra.get("tool_choice"))
    check_choice(tools, choice, name, "tool_choice")
    messages = tuple(_message(m, i) for i, m in enumerate(req.messages))
    parallel = req.parallel_tool_calls
    if parallel is None:
        parallel = extra.get("parallel_tool_calls") is not False
    return _request(
        req,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        parallel_tool_calls=parallel,
    )


def from_generate_request(req: s.GenerateRequest, made: Modelfile | None = None) -> GenerateRequest:
    """Raw prompts go to the model as they are; otherwise ``template`` (a Go
    template) or the model's own chat template wraps ``system`` and ``prompt``.
    ``made``: the model's Modelfile, whose ``TEMPLATE`` (with its ``SYSTEM``) wraps
    the prompt when the request brings no template of its own, as in Ollama."""
    _refuse_unsupported(req, bool(req.images))
    if req.suffix:
        raise InvalidRequestError(f"{req.model} does not support insert (suffix).", param="suffix")
    prompt = req.prompt or ""
    if req.raw:
        return _request(req, prompt=prompt)
    if req.template:
        text = render_go_template(req.template, system=req.system or "", prompt=prompt)
        return _request(req, prompt=text)
    if made is not None and made.template:
        system = req.system if req.system is not None else made.system
        text = _model_template(made.template, system or "", prompt)
        if text is not None:
            return _request(req, prompt=text)
    messages = [Message("user", prompt)]
    if req.system:
        messages.insert(0, Message("system", req.system))
    return _request(req, messages=tuple(messages))


def _model_template(template: str, system: str, prompt: str) -> str | None:
    """The prompt through a model's own Go template, or None when it is one llmkit
    does not render (an Ollama chat template ranging over ``.Messages``): the chat
    template inside the GGUF wraps it then, as it does every chat."""
    try:
        return render_go_template(template, system=system, prompt=prompt)
    except InvalidRequestError:
        return None


def with_context(
    req: GenerateRequest, context: list[int] | None, encoded: list[int] | None
) -> tuple[GenerateRequest, list[int] | None]:
    """Put Ollama's ``context`` (a conversation so far, as token ids) before the
    prompt's own tokens (``encoded``, None when the engine cannot tokenize); with
    the prompt as token ids, which the answer hands back with the reply's."""
    if encoded is None:
        if context:
            raise InvalidRequestError(
                "context is not supported by this model's engine.", param="context"
            )
        return req, None
    ids = (context or []) + encoded
    return replace(req, messages=None, prompt=tuple(ids)), ids


# -- responses ------------------------------------------------------------------


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


def _said(text: str, calls: list[ToolCall]) -> s.ResponseMessage:
    return s.ResponseMessage(
        content=text,
        tool_calls=[
            s.ToolCall(
                id=c.id,
                function=s.CalledFunction(name=c.name, arguments=json.loads(c.arguments_json)),
            )
            for c in calls
        ]
        or None,
    )


# Chat and generate answers differ only in where the text goes (and generate's
# ``context``), so each is a pair of builders over one loop: a piece of text
# (time stamp, text, calls, log-probabilities), and the end (metrics, the text,
# the reply's token ids, calls, log-probabilities). Generate has no calls: it
# never offers tools.
Line = TypeVar("Line", s.ChatResponse, s.GenerateResponse)
Done = TypeVar("Done", s.ChatDoneResponse, s.GenerateDoneResponse)
Scored = list[s.Logprob] | None
PieceFn = Callable[[str, str, list[ToolCall], Scored], Line]
DoneFn = Callable[[dict[str, Any], str, list[int], list[ToolCall], Scored], Done]


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
        calls = join_calls(st.chunk.tool_calls)
        if st.chunk.text or calls or st.chunk.logprobs:
            scored = _logprobs_out(st.chunk.logprobs)
            yield piece(rfc3339(st.at), st.chunk.text, calls, scored)
        if st.chunk.finish_reason:
            yield done(_metrics(model, st, timing), "", ids, [], None)


async def _whole(
    stamped: AsyncIterable[Stamped], done: DoneFn[Done], model: str, timing: Timing
) -> Done:
    texts: list[str] = []
    ids: list[int] = []
    deltas: list[ToolCallDelta] = []
    scored: list[Logprob] = []
    last: Stamped | None = None
    async for st in stamped:
        texts.append(st.chunk.text)
        ids.extend(st.chunk.token_ids)
        deltas.extend(st.chunk.tool_calls)
        scored.extend(st.chunk.logprobs)
        # A stream cut short has no final chunk: its numbers are unknown, not the
        # last piece's.
        last = st if st.chunk.finish_reason else Stamped(Chunk(), st.ns, st.at)
    if last is None:
        raise ValueError("a generation yields at least its final chunk")
    metrics = _metrics(model, last, timing)
    return done(metrics, "".join(texts), ids, join_calls(deltas), _logprobs_out(scored))


def _chat(model: str) -> tuple[PieceFn[s.ChatResponse], DoneFn[s.ChatDoneResponse]]:
    def piece(at: str, text: str, calls: list[ToolCall], scored: Scored) -> s.ChatResponse:
        message = _said(text, calls)
        return s.ChatResponse(model=model, created_at=at, message=message, logprobs=scored)

    def done(
        metrics: dict[str, Any], text: str, ids: list[int], calls: list[ToolCall], scored: Scored
    ) -> s.ChatDoneResponse:
        return s.ChatDoneResponse(**metrics, message=_said(text, calls), logprobs=scored)

    return piece, done


def _generate(
    model: str, prompt_ids: list[int] | None
) -> tuple[PieceFn[s.GenerateResponse], DoneFn[s.GenerateDoneResponse]]:
    def piece(at: str, text: str, _calls: list[ToolCall], scored: Scored) -> s.GenerateResponse:
        return s.GenerateResponse(model=model, created_at=at, response=text, logprobs=scored)

    def done(
        metrics: dict[str, Any], text: str, ids: list[int], _calls: list[ToolCall], scored: Scored
    ) -> s.GenerateDoneResponse:
        # Ollama hands back the conversation so far (prompt, then reply) as token
        # ids; the next request sends them as ``context`` to continue it.
        context = None if prompt_ids is None else prompt_ids + ids
        return s.GenerateDoneResponse(**metrics, response=text, context=context, logprobs=scored)

    return piece, done


def to_chat_lines(
    model: str, timing: Timing, stamped: AsyncIterable[Stamped]
) -> AsyncIterator[s.ChatResponse | s.ChatDoneResponse]:
    """A chat stream: a line per piece of text, then the metrics with empty content."""
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
