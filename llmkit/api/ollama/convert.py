"""Pure translations between Ollama wire models and llmkit's core types.

``from_*`` read a request into a ``GenerateRequest``; ``to_*`` build the response
objects and stream lines. Sampling defaults are Ollama's own (temperature 0.8,
top_k 40, top_p 0.9, repeat_penalty 1.1), so code written for Ollama gets the
replies it is used to. No HTTP here.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from llmkit.api.ollama import schemas as s
from llmkit.api.ollama.template import render_go_template
from llmkit.core.types import EngineInfo, GenerateRequest, Message, SamplingParams, Usage
from llmkit.engines.registry import ServedModel
from llmkit.errors import InvalidRequestError

DEFAULTS = SamplingParams(
    temperature=0.8, top_k=40, top_p=0.9, repeat_penalty=1.1, repeat_last_n=64
)


def _sampling(opts: s.Options | None, fmt: s.Format) -> SamplingParams:
    o = opts or s.Options()
    if o.model_extra:
        ignored = ", ".join(sorted(o.model_extra))
        s.log.info("ignored options (llmkit sets these at serve time): %s", ignored)
    response_format, schema = "text", None
    if fmt == "json":
        response_format = "json"
    elif isinstance(fmt, dict):
        response_format, schema = "json", json.dumps(fmt)
    d = DEFAULTS
    return SamplingParams(
        temperature=d.temperature if o.temperature is None else o.temperature,
        top_p=d.top_p if o.top_p is None else o.top_p,
        top_k=d.top_k if o.top_k is None else o.top_k,
        min_p=o.min_p or 0.0,
        # Ollama's seed -1 (its default) means "random".
        seed=o.seed if o.seed is not None and o.seed >= 0 else None,
        presence_penalty=o.presence_penalty or 0.0,
        frequency_penalty=o.frequency_penalty or 0.0,
        repeat_penalty=d.repeat_penalty if o.repeat_penalty is None else o.repeat_penalty,
        repeat_last_n=d.repeat_last_n if o.repeat_last_n is None else o.repeat_last_n,
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


def _request(req: s.GenerationFields, **what: Any) -> GenerateRequest:
    opts = req.options
    return GenerateRequest(
        sampling=_sampling(opts, req.format),
        max_tokens=_max_tokens(opts),
        stop=_stop(opts),
        context_limit=opts.num_ctx if opts else None,
        **what,
    )


def from_chat_request(req: s.ChatRequest) -> GenerateRequest:
    _refuse_unsupported(req, any(m.images for m in req.messages))
    if req.tools:
        raise InvalidRequestError(f"{req.model} does not support tools.", param="tools")
    messages = tuple(Message(role=m.role, content=m.content or "") for m in req.messages)
    return _request(req, messages=messages)


def from_generate_request(req: s.GenerateRequest) -> GenerateRequest:
    """Raw prompts go to the model as they are; otherwise ``template`` (a Go
    template) or the model's own chat template wraps ``system`` and ``prompt``."""
    _refuse_unsupported(req, bool(req.images))
    if req.suffix:
        raise InvalidRequestError(f"{req.model} does not support insert (suffix).", param="suffix")
    prompt = req.prompt or ""
    if req.raw:
        return _request(req, prompt=prompt)
    if req.template:
        text = render_go_template(req.template, system=req.system or "", prompt=prompt)
        return _request(req, prompt=text)
    messages = [Message("user", prompt)]
    if req.system:
        messages.insert(0, Message("system", req.system))
    return _request(req, messages=tuple(messages))


# -- responses ------------------------------------------------------------------


def now() -> str:
    """RFC 3339 in UTC, as Ollama stamps ``created_at``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Timing:
    """Nanosecond clock readings of one generation, for Ollama's durations."""

    start: int
    loads: int = 0  # the model's load count when the request came in
    load: int = 0  # time spent loading the model for this request
    first: int = 0  # the first token is out: the prompt has been read
    end: int = 0

    @staticmethod
    def clock() -> int:
        return time.perf_counter_ns()


def _done(model: str, reason: str | None, usage: Usage | None, timing: Timing) -> dict[str, Any]:
    first = timing.first or timing.end
    return {
        "model": model,
        "created_at": now(),
        "done": True,
        "done_reason": reason or "stop",
        "total_duration": timing.end - timing.start,
        "load_duration": timing.load,
        "prompt_eval_count": usage.prompt_tokens if usage else 0,
        "prompt_eval_duration": max(0, first - timing.start - timing.load),
        "eval_count": usage.completion_tokens if usage else 0,
        "eval_duration": timing.end - first,
    }


def to_chat_chunk(model: str, text: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": now(),
        "message": {"role": "assistant", "content": text},
        "done": False,
    }


def to_chat_done(
    model: str, text: str, reason: str | None, usage: Usage | None, timing: Timing
) -> dict[str, Any]:
    """The last line of a stream (``text`` empty) or the whole non-streamed answer."""
    done = _done(model, reason, usage, timing)
    return {**done, "message": {"role": "assistant", "content": text}}


def to_generate_chunk(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "created_at": now(), "response": text, "done": False}


def to_generate_done(
    model: str,
    text: str,
    reason: str | None,
    usage: Usage | None,
    timing: Timing,
    context: list[int] | None,
) -> dict[str, Any]:
    out = {**_done(model, reason, usage, timing), "response": text}
    if context is not None:
        out["context"] = context
    return out


def to_load_answer(model: str, chat: bool, unload: bool) -> dict[str, Any]:
    """What Ollama answers to an empty prompt: the model is (already) loaded."""
    out: dict[str, Any] = {
        "model": model,
        "created_at": now(),
        "done": True,
        "done_reason": "unload" if unload else "load",
    }
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    return out


# -- model listings ---------------------------------------------------------------


def digest(m: ServedModel) -> str:
    """Identifies the weights as served (file, size, time); hashing gigabytes of
    weights on every listing would be too slow."""
    info = m.engine.info
    key = f"{info.model}\0{info.size_bytes}\0{m.created}".encode()
    return hashlib.sha256(key).hexdigest()


def details(info: EngineInfo) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": info.format,
        "family": info.family,
        "families": [info.family] if info.family else None,
        "parameter_size": info.parameter_size,
        "quantization_level": info.quantization,
    }


def _modified(m: ServedModel) -> str:
    return datetime.fromtimestamp(m.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_tags(models: list[ServedModel]) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "modified_at": _modified(m),
                "size": m.engine.info.size_bytes,
                "digest": digest(m),
                "details": details(m.engine.info),
            }
            for m in models
            for name in m.names
        ]
    }


def to_ps(models: list[ServedModel]) -> dict[str, Any]:
    """The models loaded now, each with when it will be unloaded (a model kept
    for good shows a time far in the future, as Ollama shows keep_alive -1)."""
    forever = datetime.now(UTC) + timedelta(days=365 * 100)

    def expires(m: ServedModel) -> str:
        when = forever if m.expires_at is None else datetime.fromtimestamp(m.expires_at, UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "models": [
            {
                "name": name,
                "model": name,
                "size": m.engine.info.size_bytes,
                "digest": digest(m),
                "details": details(m.engine.info),
                "expires_at": expires(m),
                "size_vram": 0,
                "context_length": m.engine.context_length,
            }
            for m in models
            if m.loaded
            for name in m.names
        ]
    }


def to_show(m: ServedModel) -> dict[str, Any]:
    info = m.engine.info
    model_info: dict[str, Any] = {
        k: _number(v) for k, v in info.metadata.items() if k != "tokenizer.chat_template"
    }
    model_info["general.parameter_count"] = info.parameter_count
    params = f"num_ctx {info.context_length}"
    return {
        "license": info.license,
        "modelfile": f"# served by llmkit ({info.engine})\nFROM {info.model}\nPARAMETER {params}\n",
        "parameters": params,
        "template": info.chat_template,
        "details": details(info),
        "model_info": model_info,
        "capabilities": ["completion"],
        "modified_at": _modified(m),
    }


def _number(v: str) -> Any:
    """GGUF header values arrive as text; Ollama's model_info carries numbers."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v
