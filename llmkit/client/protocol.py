"""What the client hears in each dialect, as pure functions: server addresses,
model listings and what they say about a model, and error bodies turned back
into llmkit's own exceptions (so a caller catches the same ``ContextLengthError``
whichever server answered, and whichever dialect it answered in).

Request bodies are built in ``bodies``, streamed replies read in ``stream``;
no I/O here: ``client.queries`` asks the questions, ``client.http`` moves the bytes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from llmkit.core.types import EngineInfo
from llmkit.errors import (
    AuthenticationError,
    ClientError,
    InvalidRequestError,
    LlmkitError,
    ModelSpecError,
    NotFoundError,
    ServerBusyError,
    UpstreamError,
    error_from_code,
)

Dialect = Literal["openai", "ollama", "anthropic"]
DIALECTS: tuple[Dialect, ...] = ("openai", "ollama", "anthropic")
# Asked in turn when no dialect is named; Anthropic's listing looks like OpenAI's,
# so its dialect is used only when named (``anthropic://``).
DETECTED: tuple[Dialect, ...] = ("openai", "ollama")
LISTING: dict[Dialect, str] = {
    "openai": "/v1/models",
    "ollama": "/api/tags",
    "anthropic": "/v1/models",
}
# A reply budget never asks a real Ollama for more context than this: it sizes
# its KV cache by num_ctx, and a 128k-token model would take all the memory.
OLLAMA_MAX_CTX = 8192


def root_url(url: str) -> str:
    """``http://h:8000/v1/`` and ``http://h:8000`` both mean the server at ``http://h:8000``."""
    u = url.strip().rstrip("/")
    if "://" not in u:
        u = "http://" + u
    return u.removesuffix("/v1")


def parse_url(url: str, *, option: str = "--url") -> tuple[str, Dialect | None]:
    """``ollama://h:p``, ``openai://h:p/v1`` and ``anthropic://h:p`` name the dialect; ``http(s)://``
    leaves it to be found out. Returns (root URL, dialect or None); ``option``
    names the flag the URL came from, for the error."""
    u = url.strip()
    for dialect in DIALECTS:
        for scheme in ("", "+https", "+http"):
            prefix = f"{dialect}{scheme}://"
            if u.lower().startswith(prefix):
                http = "https" if scheme == "+https" else "http"
                return root_url(f"{http}://{u[len(prefix) :]}"), dialect
    if "://" in u and not u.lower().startswith(("http://", "https://")):
        raise ModelSpecError(
            f"{option} {url}: use http://HOST:PORT, ollama://HOST:PORT, "
            "openai://HOST:PORT/v1 or anthropic://HOST:PORT."
        )
    return root_url(u), None


# -- listings ---------------------------------------------------------------------


def is_listing(answer: Any) -> bool:
    return isinstance(answer, dict) and ("data" in answer or "models" in answer)


def tells_context(openai_listing: Any) -> bool:
    """Whether an OpenAI-style listing says each model's context (llmkit, vLLM)."""
    models = openai_listing.get("data", []) if isinstance(openai_listing, dict) else []
    return any(isinstance(m, dict) and "max_model_len" in m for m in models)


def model_names(dialect: Dialect, listing: dict[str, Any]) -> list[str]:
    if dialect != "ollama":  # OpenAI's and Anthropic's: {"data": [{"id"}]}
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
    # Ollama lists an untagged name as "name:latest".
    wanted = {model, model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"}
    for m in ps.get("models", []):
        if wanted & {m.get("name"), m.get("model")} and m.get("context_length"):
            return int(m["context_length"])
    for key, value in (show.get("model_info") or {}).items():
        if key.endswith(".context_length") and isinstance(value, int):
            return min(value, OLLAMA_MAX_CTX)
    return None


def openai_info(listing: dict[str, Any], model: str) -> EngineInfo:
    """What an OpenAI-style listing says of ``model``; ``engine`` is left to the caller."""
    return EngineInfo(
        engine="", model=model, context_length=openai_context_length(listing, model) or 0
    )


def ollama_info(
    tags: dict[str, Any], show: dict[str, Any], ps: dict[str, Any], model: str
) -> EngineInfo:
    """What an Ollama says of ``model`` (/api/tags, /api/show, /api/ps), as listings show it."""
    d = show.get("details") or {}
    wanted = (model, f"{model}:latest")
    sizes = [m.get("size", 0) for m in tags.get("models", []) if m.get("name") in wanted]
    return EngineInfo(
        engine="",
        model=model,
        context_length=ollama_context_length(show, ps, model) or 0,
        format=d.get("format") or "",
        family=d.get("family") or "",
        parameter_size=d.get("parameter_size") or "",
        quantization=d.get("quantization_level") or "",
        size_bytes=int(sizes[0] or 0) if sizes else 0,
        license=str(show.get("license") or ""),
        chat_template=str(show.get("template") or ""),
        metadata={k: str(v) for k, v in (show.get("model_info") or {}).items()},
    )


# -- errors -----------------------------------------------------------------------


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


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


def error_from(body: Any, status: int, server: str = "the server") -> LlmkitError:
    """An error body, back as the llmkit exception the server raised: by its code
    where llmkit knows it (with the fields it carries), else by the HTTP status.
    OpenAI's shape has code and param inside ``error``, Ollama's (as llmkit writes
    it) beside it; both put the fields in ``details``. ``server`` starts the
    message of a server error that says no more than its status."""
    message = error_message(body)
    d = body if isinstance(body, dict) else {}
    said = d["error"] if isinstance(d.get("error"), dict) else d
    code, param = said.get("code"), said.get("param")
    param = param if isinstance(param, str) else None
    err = error_from_code(code, message, param=param, fields=d.get("details"))
    if err is not None:
        return err
    err = _by_status(status, message, server)
    if isinstance(code, str):  # keep what the server said precisely (vLLM's codes are ints)
        err.code = code
    err.param = param or err.param
    return err


def _by_status(status: int, message: str, server: str) -> LlmkitError:
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
    return UpstreamError(f"{server} answered {status}: {message}")
