"""What the client says and hears in each dialect, as pure functions: request
bodies, stream lines, model listings, and HTTP errors turned back into llmkit's
own exceptions (so a caller catches the same ``ContextLengthError``-style
errors whichever server answered).

No I/O here; ``client.http`` moves the bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from llmkit.core.types import Message, Usage
from llmkit.errors import (
    AuthenticationError,
    ClientError,
    InvalidRequestError,
    LlmkitError,
    NotFoundError,
    ServerBusyError,
    UpstreamError,
)

Dialect = Literal["openai", "ollama"]
DIALECTS: tuple[Dialect, ...] = ("openai", "ollama")
# A reply budget never asks a real Ollama for more context than this: it sizes
# its KV cache by num_ctx, and a 128k-token model would take all the memory.
OLLAMA_MAX_CTX = 8192


def root_url(url: str) -> str:
    """``http://h:8000/v1/`` and ``http://h:8000`` both mean the server at ``http://h:8000``."""
    u = url.strip().rstrip("/")
    if "://" not in u:
        u = "http://" + u
    return u.removesuffix("/v1")


@dataclass(frozen=True)
class Delta:
    """One piece of a streamed reply; the last carries ``finish_reason``/``usage``."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    done: bool = False


def chat_path(dialect: Dialect) -> str:
    return "/v1/chat/completions" if dialect == "openai" else "/api/chat"


def chat_body(
    dialect: Dialect,
    model: str,
    messages: list[Message],
    *,
    max_tokens: int | None,
    temperature: float | None,
    context_length: int | None,
    stream: bool = True,
) -> dict[str, Any]:
    msgs = [{"role": m.role, "content": m.content} for m in messages]
    if dialect == "openai":
        body: dict[str, Any] = {"model": model, "messages": msgs, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return body
    options: dict[str, Any] = {}
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if temperature is not None:
        options["temperature"] = temperature
    if context_length is not None:
        options["num_ctx"] = context_length
    return {"model": model, "messages": msgs, "stream": stream, "options": options}


def parse_line(dialect: Dialect, line: str) -> Delta | None:
    """One line of a streamed reply, or None for lines that carry nothing."""
    line = line.strip()
    if not line:
        return None
    if dialect == "openai":
        if not line.startswith("data:"):
            return None  # SSE comments, event names
        data = line[5:].strip()
        if data == "[DONE]":
            return Delta(done=True)
        obj = json.loads(data)
        if "error" in obj:
            raise error_from(obj, 500)
        usage = None
        if obj.get("usage"):
            u = obj["usage"]
            usage = Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
        choices = obj.get("choices") or []
        if not choices:
            return Delta(usage=usage)
        c = choices[0]
        return Delta(
            # chat chunks carry a delta; completion chunks (/v1/completions) a text
            text=(c.get("delta") or {}).get("content") or c.get("text") or "",
            finish_reason=c.get("finish_reason"),
            usage=usage,
        )
    obj = json.loads(line)
    if "error" in obj:
        raise error_from(obj, 500)
    text = (obj.get("message") or {}).get("content") or obj.get("response") or ""
    if not obj.get("done"):
        return Delta(text=text)
    usage = Usage(obj.get("prompt_eval_count", 0), obj.get("eval_count", 0))
    return Delta(text=text, finish_reason=obj.get("done_reason") or "stop", usage=usage, done=True)


def model_names(dialect: Dialect, listing: dict[str, Any]) -> list[str]:
    if dialect == "openai":
        return [m["id"] for m in listing.get("data", [])]
    return [m.get("name") or m.get("model") for m in listing.get("models", [])]


def openai_context_length(listing: dict[str, Any], model: str) -> int | None:
    """vLLM and llmkit say ``max_model_len``; some servers ``context_length``."""
    for m in listing.get("data", []):
        if m.get("id") == model:
            for key in ("max_model_len", "context_length", "context_window"):
                if isinstance(m.get(key), int):
                    return m[key]
    return None


def ollama_context_length(show: dict[str, Any], ps: dict[str, Any], model: str) -> int | None:
    for m in ps.get("models", []):
        if model in (m.get("name"), m.get("model")) and m.get("context_length"):
            return int(m["context_length"])
    for key, value in (show.get("model_info") or {}).items():
        if key.endswith(".context_length") and isinstance(value, int):
            return min(value, OLLAMA_MAX_CTX)
    return None


def error_message(body: Any) -> str:
    """The message out of either dialect's error shape (or whatever came back)."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err:
            return str(err)
        if "detail" in body:
            return str(body["detail"])
    return str(body)[:500]


def error_from(body: Any, status: int, where: str = "the server") -> LlmkitError:
    """An HTTP error, back as the llmkit exception the server would have raised."""
    message = error_message(body)
    if status in (401, 403):
        return AuthenticationError(message)
    if status == 404:
        return NotFoundError(message)
    if status in (429, 503):
        return ServerBusyError(message)
    if 400 <= status < 500:
        err = InvalidRequestError(message) if status in (400, 413, 422) else ClientError(message)
        err.status = status
        return err
    return UpstreamError(f"{where} answered {status}: {message}")


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")
