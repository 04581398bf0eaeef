"""Pure translations between Ollama wire models and llmkit's core types.

``from_*`` read a request into a ``GenerateRequest`` (the answers are built in
``replies.py``, the model listings in ``listings.py``). Sampling
values a request leaves out come from the model's Modelfile, then Ollama's own
defaults (temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1), so code
written for Ollama gets the replies it is used to.

No HTTP, no clock, no registry here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from llmkit.api.images import ImageRef, Images
from llmkit.api.logprobs import check_range
from llmkit.api.ollama import schemas as s
from llmkit.api.ollama.template import render_go_template
from llmkit.api.ollama.thinking import read_think
from llmkit.api.tools import check_choice, tool_from_dict
from llmkit.core.types import (
    DEFAULT_SAMPLING,
    GenerateRequest,
    Message,
    SamplingParams,
    ToolCall,
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


def _logprobs(req: s.GenerationFields) -> int | None:
    """``top_logprobs`` alone asks for them too: alternatives without the token
    they are alternatives to would make no sense."""
    top = check_range(req.top_logprobs or 0, MAX_TOP_LOGPROBS, "top_logprobs")
    return top if req.logprobs or top else None


def _request(req: s.GenerationFields, **what: Any) -> GenerateRequest:
    opts = req.options
    think, effort = read_think(req.think)
    return GenerateRequest(
        sampling=_sampling(opts, req.format),
        defaults=DEFAULTS,
        max_tokens=_max_tokens(opts),
        stop=_stop(opts),
        context_limit=opts.num_ctx if opts else None,
        logprobs=_logprobs(req),
        think=think,
        effort=effort,
        speculative=opts.speculative if opts else None,
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


def _message(m: s.ChatMessage, i: int, images: Images) -> Message:
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
    if m.images and m.role != "user":
        raise InvalidRequestError(
            f"Images go in user messages; messages.{i} is a {m.role} message.",
            param=f"messages.{i}.images",
        )
    seen = tuple(
        images.get(ImageRef(b64, f"messages.{i}.images.{k}", kind="base64"))
        for k, b64 in enumerate(m.images or ())
    )
    return Message(
        role=m.role,
        content=m.content or "",
        tool_calls=tuple(calls),
        tool_call_id=call_id if isinstance(call_id, str) else None,
        reasoning=(m.thinking or "") if m.role == "assistant" else "",
        images=seen,
    )


def from_chat_request(req: s.ChatRequest, images: Images | None = None) -> GenerateRequest:
    """``images``: the request's images as ``api.images`` read them."""
    images = images if images is not None else Images()
    tools = tuple(
        tool_from_dict(t.get("function"), f"tools.{i}.function")
        for i, t in enumerate(req.tools or ())
    )
    # Also in ``options``: the one place Ollama's clients pass anything through.
    extra = (req.options.model_extra or {}) if req.options else {}
    choice, name = _tool_choice(req.tool_choice or extra.get("tool_choice"))
    check_choice(tools, choice, name, "tool_choice")
    messages = tuple(_message(m, i, images) for i, m in enumerate(req.messages))
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


def from_generate_request(
    req: s.GenerateRequest, made: Modelfile | None = None, images: Images | None = None
) -> GenerateRequest:
    """Raw prompts go to the model as they are; otherwise ``template`` (a Go
    template) or the model's own chat template wraps ``system`` and ``prompt``.
    ``made``: the model's Modelfile, whose ``TEMPLATE`` (with its ``SYSTEM``) wraps
    the prompt when the request brings no template of its own, as in Ollama.
    ``images`` go with the prompt as a user turn's, through the chat template
    (the one that knows where the model's image tokens go)."""
    pictures = tuple((images or Images()).get(ref) for ref in req.image_refs())
    if pictures and (req.raw or req.template):
        raise InvalidRequestError(
            "images go through the model's chat template: send them without raw or template.",
            param="raw" if req.raw else "template",
        )
    if req.suffix:
        raise InvalidRequestError(f"{req.model} does not support insert (suffix).", param="suffix")
    prompt = req.prompt or ""
    if req.raw:
        return _request(req, prompt=prompt)
    if req.template:
        text = render_go_template(req.template, system=req.system or "", prompt=prompt)
        return _request(req, prompt=text)
    if made is not None and made.template and not pictures:
        system = req.system if req.system is not None else made.system
        text = _model_template(made.template, system or "", prompt)
        if text is not None:
            return _request(req, prompt=text)
    messages = [Message("user", prompt, images=pictures)]
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
    the prompt as token ids, which the answer hands back with the reply's. A prompt
    with images stays messages: token ids cannot carry an image."""
    if req.messages and any(m.images for m in req.messages):
        if context:
            raise InvalidRequestError("context cannot go with images.", param="context")
        return req, None
    if encoded is None:
        if context:
            raise InvalidRequestError(
                "context is not supported by this model's engine.", param="context"
            )
        return req, None
    ids = (context or []) + encoded
    return replace(req, messages=None, prompt=tuple(ids)), ids
