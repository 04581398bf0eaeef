"""Requests for an upstream server, in its own dialect: pure functions from a
``GenerateRequest`` to the path and body an OpenAI-style server (vLLM, llmkit, a
hosted API) or an Ollama server expects, and the reading of an ``--upstream`` URL.
No I/O here; ``upstream.py`` sends them.
"""

from __future__ import annotations

import json
from typing import Any

from llmkit.client import protocol as p
from llmkit.client.protocol import Dialect
from llmkit.core.types import GenerateRequest, SamplingParams
from llmkit.errors import InvalidRequestError, ModelSpecError


def parse_upstream(url: str) -> tuple[str, Dialect | None]:
    """``ollama://h:p`` and ``openai://h:p/v1`` name the dialect; ``http(s)://``
    leaves it to be found out. Returns (root URL, dialect or None)."""
    u = url.strip()
    for dialect in p.DIALECTS:
        for scheme in ("", "+https", "+http"):
            prefix = f"{dialect}{scheme}://"
            if u.lower().startswith(prefix):
                http = "https" if scheme == "+https" else "http"
                return p.root_url(f"{http}://{u[len(prefix) :]}"), dialect
    if "://" in u and not u.lower().startswith(("http://", "https://")):
        raise ModelSpecError(
            f"--upstream {url}: use http://HOST:PORT, ollama://HOST:PORT or openai://HOST:PORT/v1."
        )
    return p.root_url(u), None


def to_openai(model: str, req: GenerateRequest) -> tuple[str, dict[str, Any]]:
    """The OpenAI (or vLLM) request for ``req``: path and body. vLLM's extras
    (top_k, min_p, ...) go only when they matter: OpenAI itself refuses them."""
    s = req.sampling
    body: dict[str, Any] = {"model": model, "stream": True, "temperature": s.temperature}
    body["stream_options"] = {"include_usage": True}
    if req.messages is not None:
        path = "/v1/chat/completions"
        body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
    else:
        path = "/v1/completions"
        body["prompt"] = req.prompt if isinstance(req.prompt, str) else list(req.prompt or ())
    optional: dict[str, Any] = {
        "top_p": s.top_p if s.top_p != 1.0 else None,
        "max_tokens": req.max_tokens,
        "seed": s.seed,
        "stop": list(req.stop) or None,
        "presence_penalty": s.presence_penalty or None,
        "frequency_penalty": s.frequency_penalty or None,
        "logit_bias": {str(t): b for t, b in s.logit_bias} or None,
        "top_k": s.top_k or None,
        "min_p": s.min_p or None,
        "repetition_penalty": s.repeat_penalty if s.repeat_penalty != 1.0 else None,
        "ignore_eos": req.ignore_eos or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if s.response_format == "json":
        body["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "reply", "schema": _schema(s)}}
            if s.json_schema
            else {"type": "json_object"}
        )
    return path, body


def to_ollama(model: str, req: GenerateRequest) -> tuple[str, dict[str, Any]]:
    """The Ollama request for ``req``: /api/chat for messages, /api/generate (raw)
    for a text prompt. Every sampling value is sent, so Ollama's defaults never
    replace the caller's."""
    s = req.sampling
    if s.logit_bias:
        raise InvalidRequestError("logit_bias is not supported by this model's (Ollama) server.")
    options: dict[str, Any] = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty,
        "repeat_last_n": s.repeat_last_n,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
    }
    optional = {
        "seed": s.seed,
        "num_predict": req.max_tokens,
        "stop": list(req.stop) or None,
        "num_ctx": req.context_limit,
    }
    options.update({k: v for k, v in optional.items() if v is not None})
    body: dict[str, Any] = {"model": model, "stream": True, "options": options}
    if s.response_format == "json":
        body["format"] = _schema(s) if s.json_schema else "json"
    if req.messages is not None:
        body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
        return "/api/chat", body
    if not isinstance(req.prompt, str):
        raise InvalidRequestError(
            "Prompts of token ids are not supported by this model's (Ollama) server; send text.",
            param="prompt",
        )
    return "/api/generate", {**body, "prompt": req.prompt, "raw": True}


def _schema(s: SamplingParams) -> Any:
    return json.loads(s.json_schema or "null")
