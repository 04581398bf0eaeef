"""Requests in each dialect: pure functions from a core ``GenerateRequest`` to the
path and body an OpenAI-style server (vLLM, llmkit, a hosted API) or an Ollama
server expects. Every reply is asked for as a stream.

Two callers want different things of the sampling values. The upstream engine
passes on what its caller chose, every value (``send=None``), so a server's own
defaults never replace them. ``Chat`` sends only what its user set (``send``
names those ``SamplingParams`` fields) and leaves the rest to the server, as a
hosted API or an Ollama Modelfile tunes its models. Anthropic's Messages API has
its own module (``client.anthropic``). No I/O here.

Reasoning models. What a caller asks of the thinking (``GenerateRequest.think``
and ``effort``) goes as each dialect spells it: OpenAI's ``reasoning_effort``
("none" to switch it off, as OpenAI's and llmkit's servers take it), Ollama's
``think`` (true, false or a level). An assistant turn's own thinking goes back
with it only where the message carries some (``Message.reasoning``): OpenAI's
``reasoning_content`` (DeepSeek's and vLLM's name), Ollama's ``thinking``; the
server's chat template then decides whether the model sees it.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, get_args

from llmkit.client.anthropic import to_anthropic
from llmkit.client.protocol import Dialect
from llmkit.core.images import to_base64, to_data_uri
from llmkit.core.types import Effort, GenerateRequest, Message, SamplingParams, Tool
from llmkit.errors import InvalidRequestError

Path = str
Body = dict[str, Any]
# What a caller asks of a reasoning model: on, off, or how hard (None: its default).
Think = bool | Effort | None
EFFORTS: tuple[Effort, ...] = get_args(Effort)


def think_fields(think: Think) -> dict[str, Any]:
    """``think=`` as ``GenerateRequest`` fields: a level means thinking at that level."""
    if think is None or isinstance(think, bool):
        return {"think": think}
    if think in EFFORTS:
        return {"think": True, "effort": think}
    allowed = ", ".join(["true", "false", *(f"'{e}'" for e in EFFORTS)])
    raise InvalidRequestError(f"think must be one of {allowed}; got {think!r}.", param="think")


def to_request(
    dialect: Dialect, model: str, req: GenerateRequest, *, send: Collection[str] | None = None
) -> tuple[Path, Body]:
    build = {"openai": to_openai, "ollama": to_ollama, "anthropic": to_anthropic}[dialect]
    return build(model, req, send=send)


def to_openai(
    model: str, req: GenerateRequest, *, send: Collection[str] | None = None
) -> tuple[Path, Body]:
    """The OpenAI (or vLLM) request for ``req``: path and body. vLLM's extras
    (top_k, min_p, ...) go only when they matter: OpenAI itself refuses them."""
    s = req.sampling
    body: Body = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    if req.messages is not None:
        path = "/v1/chat/completions"
        body["messages"] = [_openai_message(m) for m in req.messages]
        body.update(_openai_tools(req))
    else:
        path = "/v1/completions"
        body["prompt"] = req.prompt if isinstance(req.prompt, str) else list(req.prompt or ())
    sampling = {
        "temperature": s.temperature,
        "top_p": s.top_p if s.top_p != 1.0 else None,
        "seed": s.seed,
        "presence_penalty": s.presence_penalty or None,
        "frequency_penalty": s.frequency_penalty or None,
        "logit_bias": {str(t): b for t, b in s.logit_bias} or None,
        "top_k": s.top_k or None,
        "min_p": s.min_p or None,
        "repeat_penalty": s.repeat_penalty if s.repeat_penalty != 1.0 else None,
    }
    chosen = _chosen(sampling, send)
    if "repeat_penalty" in chosen:  # vLLM's name for it
        chosen["repetition_penalty"] = chosen.pop("repeat_penalty")
    optional = {
        "max_tokens": req.max_tokens,
        "stop": list(req.stop) or None,
        "ignore_eos": req.ignore_eos or None,
    }
    body.update(chosen)
    body.update({k: v for k, v in optional.items() if v is not None})
    if req.logprobs is not None:  # chat's spelling, or completions' count
        chat = req.messages is not None
        body.update(
            {"logprobs": True, "top_logprobs": req.logprobs} if chat else {"logprobs": req.logprobs}
        )
    if req.think is False:
        body["reasoning_effort"] = "none"
    elif req.effort is not None:
        body["reasoning_effort"] = req.effort
    if s.response_format == "json":
        body["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "reply", "schema": _schema(s)}}
            if s.json_schema
            else {"type": "json_object"}
        )
    return path, body


def to_ollama(
    model: str, req: GenerateRequest, *, send: Collection[str] | None = None
) -> tuple[Path, Body]:
    """The Ollama request for ``req``: /api/chat for messages, /api/generate (raw)
    for a text prompt."""
    s = req.sampling
    if s.logit_bias:
        raise InvalidRequestError("logit_bias is not supported by this model's (Ollama) server.")
    sampling = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty,
        "repeat_last_n": s.repeat_last_n,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "seed": s.seed,
    }
    optional = {
        "num_predict": req.max_tokens,
        "stop": list(req.stop) or None,
        "num_ctx": req.context_limit,
    }
    options = _chosen(sampling, send)
    options.update({k: v for k, v in optional.items() if v is not None})
    body: Body = {"model": model, "stream": True, "options": options}
    if req.logprobs is not None:
        body.update(logprobs=True, top_logprobs=req.logprobs)
    if req.think is not None or req.effort is not None:
        body["think"] = req.effort if req.think is not False and req.effort else bool(req.think)
    if s.response_format == "json":
        body["format"] = _schema(s) if s.json_schema else "json"
    if req.messages is not None:
        body["messages"] = [_ollama_message(m) for m in req.messages]
        if req.offers_tools:
            body["tools"] = [_function(t) for t in req.tools]
            # Ollama itself cannot force or forbid a call; another llmkit takes this.
            if req.tool_choice == "required":
                body["tool_choice"] = _openai_choice(req)
            if not req.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        return "/api/chat", body
    if not isinstance(req.prompt, str):
        raise InvalidRequestError(
            "Prompts of token ids are not supported by this model's (Ollama) server; send text.",
            param="prompt",
        )
    return "/api/generate", {**body, "prompt": req.prompt, "raw": True}


def _function(t: Tool) -> Body:
    fn: Body = {"name": t.name, "parameters": json.loads(t.parameters_json)}
    if t.description:
        fn["description"] = t.description
    if t.strict:
        fn["strict"] = True
    return {"type": "function", "function": fn}


def _openai_choice(req: GenerateRequest) -> Any:
    if req.tool_name is not None:
        return {"type": "function", "function": {"name": req.tool_name}}
    return req.tool_choice


def _openai_tools(req: GenerateRequest) -> Body:
    """The tools, as OpenAI (and vLLM) take them; none at all for ``none``."""
    if not req.offers_tools:
        return {}
    out: Body = {"tools": [_function(t) for t in req.tools], "tool_choice": _openai_choice(req)}
    if not req.parallel_tool_calls:
        out["parallel_tool_calls"] = False
    return out


def openai_content(m: Message) -> str | list[Body]:
    """A message's ``content``: its text, or with images, image parts then text."""
    if not m.images:
        return m.content
    parts: list[Body] = [
        {"type": "image_url", "image_url": {"url": to_data_uri(i), "detail": i.detail}}
        for i in m.images
    ]
    return parts + ([{"type": "text", "text": m.content}] if m.content else [])


def _openai_message(m: Message) -> Body:
    out: Body = {"role": m.role, "content": openai_content(m)}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in m.tool_calls
        ]  # fmt: skip
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.reasoning and m.role == "assistant":
        out["reasoning_content"] = m.reasoning
    return out


def _ollama_message(m: Message) -> Body:
    out: Body = {"role": m.role, "content": m.content}
    if m.tool_calls:  # Ollama's arguments are an object, not a JSON string
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": json.loads(c.arguments_json or "{}")}}
            for c in m.tool_calls
        ]
    if m.reasoning and m.role == "assistant":
        out["thinking"] = m.reasoning
    if m.images:
        out["images"] = [to_base64(i) for i in m.images]
    return out


def _chosen(sampling: dict[str, Any], send: Collection[str] | None) -> dict[str, Any]:
    """The values that go: every one that is set, or only the fields ``send`` names."""
    return {k: v for k, v in sampling.items() if v is not None and (send is None or k in send)}


def _schema(s: SamplingParams) -> Any:
    return json.loads(s.json_schema or "null")
