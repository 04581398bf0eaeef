"""The upstream engine: a running OpenAI-style or Ollama-style server (a real
Ollama, a vLLM, another llmkit, a hosted API) as the backend of a served model.

Each request is put in the upstream's own dialect whichever dialect the caller
spoke, so an Ollama server gains the OpenAI API and the other way round. The
upstream's errors come back as llmkit errors (``client.protocol.error_from``),
which the caller's dialect renders; an upstream that does not answer is a 502
naming its address within the connect timeout, never a hang.

The request bodies are built by pure functions in ``upstream_convert``; the vLLM
engine reuses this class to front the vLLM server it supervises.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from llmkit.client import protocol as p
from llmkit.client.protocol import Dialect
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Usage
from llmkit.engines.base import Engine
from llmkit.engines.textstream import TextStream
from llmkit.engines.upstream_convert import parse_upstream, to_ollama, to_openai
from llmkit.errors import (
    ConfigError,
    InvalidRequestError,
    LlmkitError,
    ModelSpecError,
    UnreachableError,
    UpstreamError,
)

log = logging.getLogger("llmkit.engine.upstream")
CONNECT_TIMEOUT = 3.0  # a refused or silent address fails fast: a 502, not a hang


class UpstreamEngine(Engine):
    def __init__(
        self,
        url: str,
        *,
        model: str,
        api_key: str | None = None,
        dialect: Dialect | None = None,
        engine_name: str = "upstream",
    ) -> None:
        self.url, found = parse_upstream(url)
        self.dialect: Dialect | None = dialect or found
        self.model = model
        self.api_key = api_key
        self.engine_name = engine_name
        self._http: httpx.AsyncClient | None = None
        self._info: EngineInfo | None = None
        self._can_tokenize: bool | None = None
        self._running = 0
        self._finishing = False

    # -- lifetime -------------------------------------------------------------------

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(600.0, connect=CONNECT_TIMEOUT),
        )
        self._finishing = False
        try:
            await self._describe()
        except UnreachableError as e:
            # A proxy starts whether or not its upstream is up; requests say 502 until it is.
            log.warning("%s; requests for %s get 502 until it answers", e.message, self.model)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def finish_all(self) -> int:
        self._finishing = True
        return self._running

    def load(self) -> tuple[int, int]:
        return (self._running, 0)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise UpstreamError(f"The {self.engine_name} engine is not started.")
        return self._http

    # -- talking to the upstream ------------------------------------------------------

    def _unreachable(self, e: Exception) -> UnreachableError:
        return UnreachableError(
            f"The upstream server {self.url} is not answering ({type(e).__name__}: {e})."
        )

    def _error(self, status: int, raw: bytes) -> LlmkitError:
        body = p.parse_body(raw)
        err = p.error_from(body, status, where=f"The upstream server {self.url}")
        detail = body.get("error") if isinstance(body, dict) else None
        if isinstance(detail, dict):  # keep what an OpenAI-style server said precisely
            err.code = detail.get("code") or err.code
            err.param = detail.get("param") or err.param
        return err

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = await self.http.request(method, path, json=body)
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        if r.status_code >= 400:
            raise self._error(r.status_code, r.content)
        return p.parse_body(r.content)

    async def _detect(self) -> Dialect:
        """The dialect, found by asking when the URL did not say. A server that speaks
        both (Ollama, llmkit) is reached in the one that tells more: OpenAI's when its
        listing has ``max_model_len`` (llmkit: /tokenize too), else Ollama's."""
        if self.dialect is None:
            found: dict[str, Any] = {}
            for dialect, path in (("openai", "/v1/models"), ("ollama", "/api/tags")):
                try:
                    listing = await self._call("GET", path)
                except UnreachableError:
                    raise
                except LlmkitError:
                    continue
                if isinstance(listing, dict) and ("data" in listing or "models" in listing):
                    found[dialect] = listing
            if not found:
                raise UpstreamError(
                    f"{self.url} answers neither /v1/models (OpenAI-style) nor /api/tags "
                    "(Ollama-style); give the dialect: openai://HOST:PORT/v1 or ollama://HOST:PORT."
                )
            rich = any("max_model_len" in m for m in found.get("openai", {}).get("data", []))
            self.dialect = "openai" if "openai" in found and (rich or len(found) == 1) else "ollama"
            log.info("%s speaks the %s dialect", self.url, self.dialect)
        return self.dialect

    async def _describe(self) -> EngineInfo:
        """What the upstream says about the model; refuses a model it does not serve."""
        dialect = await self._detect()
        listing = await self._call("GET", "/v1/models" if dialect == "openai" else "/api/tags")
        names = p.model_names(dialect, listing)
        if names and not {self.model, f"{self.model}:latest"} & set(names):
            raise ModelSpecError(
                f"The upstream server {self.url} does not serve '{self.model}'; "
                f"it serves: {', '.join(names)}."
            )
        details: dict[str, str | int] = {"upstream": self.url, "dialect": dialect}
        info = EngineInfo(engine=self.engine_name, model=self.model, context_length=0)
        if dialect == "openai":
            ctx = p.openai_context_length(listing, self.model) or 0
            info = EngineInfo(self.engine_name, self.model, ctx, details)
        else:
            show = await self._call("POST", "/api/show", {"model": self.model})
            ps = await self._call("GET", "/api/ps")
            ctx = p.ollama_context_length(show, ps, self.model) or 0
            d = show.get("details") or {}
            wanted = (self.model, f"{self.model}:latest")
            tags = [m for m in listing.get("models", []) if m.get("name") in wanted]
            size = tags[0].get("size", 0) if tags else 0
            info = EngineInfo(
                self.engine_name,
                self.model,
                ctx,
                details,
                format=d.get("format") or "",
                family=d.get("family") or "",
                parameter_size=d.get("parameter_size") or "",
                quantization=d.get("quantization_level") or "",
                size_bytes=int(size or 0),
                license=str(show.get("license") or ""),
                chat_template=str(show.get("template") or ""),
                metadata={k: str(v) for k, v in (show.get("model_info") or {}).items()},
            )
        self._info = info
        return info

    async def _ready(self) -> Dialect:
        if self._info is None:
            await self._describe()
        return self.dialect  # type: ignore[return-value]

    @property
    def info(self) -> EngineInfo:
        if self._info is None:
            return EngineInfo(self.engine_name, self.model, 0, {"upstream": self.url})
        return self._info

    # -- the Engine interface ----------------------------------------------------------

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        dialect = await self._ready()
        path, body = (to_openai if dialect == "openai" else to_ollama)(self.model, req)
        self._running += 1
        try:
            async with self.http.stream("POST", path, json=body) as r:
                if r.status_code >= 400:
                    raise self._error(r.status_code, await r.aread())
                async for chunk in self._relay(dialect, r, req):
                    yield chunk
        except httpx.ConnectError as e:
            raise self._unreachable(e) from e
        except httpx.TimeoutException as e:
            raise (
                self._unreachable(e)
                if isinstance(e, httpx.ConnectTimeout)
                else UpstreamError(f"The upstream server {self.url} stopped answering mid-reply.")
            ) from e
        except httpx.TransportError as e:
            raise UpstreamError(
                f"The connection to the upstream server {self.url} broke mid-reply "
                f"({type(e).__name__})."
            ) from e
        finally:
            self._running -= 1

    async def _relay(
        self, dialect: Dialect, r: httpx.Response, req: GenerateRequest
    ) -> AsyncIterator[Chunk]:
        # The upstream cuts at stop strings itself; TextStream also holds back a stop
        # string's start, so the caller sees the same text from every engine.
        text = TextStream(req.stop)
        finish, usage, pieces, done = None, None, 0, False
        async for line in r.aiter_lines():
            delta = p.parse_line(dialect, line)
            if delta is None:
                continue
            if delta.text:
                pieces += 1
                out = text.push(delta.text.encode("utf-8"))
                if out:
                    yield Chunk(text=out)
                if text.stopped:
                    finish, done = "stop", True
                    break
            finish = delta.finish_reason or finish
            usage = delta.usage or usage
            if delta.done:
                done = True
                break
            if self._finishing:  # the server is shutting down
                finish, done = "length", True
                break
        if not done and finish is None:
            raise UpstreamError(f"The upstream server {self.url} ended the reply before its end.")
        yield Chunk(
            text=text.flush(),
            finish_reason="length" if finish == "length" else "stop",
            usage=usage or Usage(prompt_tokens=0, completion_tokens=pieces),
        )

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        if await self._ready() != "openai":
            raise InvalidRequestError("This model's (Ollama) server cannot tokenize text.")
        body = {"model": self.model, "prompt": text, "add_special_tokens": special}
        return list((await self._tokenizer_call("/tokenize", body))["tokens"])

    async def detokenize(self, ids: list[int]) -> str:
        if await self._ready() != "openai":
            raise InvalidRequestError("This model's (Ollama) server cannot detokenize.")
        out = await self._tokenizer_call("/detokenize", {"model": self.model, "tokens": ids})
        return str(out["prompt"])

    async def encode(self, req: GenerateRequest) -> list[int] | None:
        """The prompt's tokens where the upstream can tell (vLLM, llmkit: ``/tokenize``
        with the model's chat template); None for Ollama and plain OpenAI servers."""
        if isinstance(req.prompt, tuple):
            return list(req.prompt)
        if self._can_tokenize is False or await self._ready() != "openai":
            return None
        body: dict[str, Any] = {"model": self.model}
        if req.messages is not None:
            body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
        else:
            body["prompt"] = req.prompt
        try:
            return list((await self._tokenizer_call("/tokenize", body))["tokens"])
        except InvalidRequestError:
            return None

    async def _tokenizer_call(self, path: str, body: dict[str, Any]) -> Any:
        try:
            out = await self._call("POST", path, body)
        except LlmkitError as e:
            if e.status in (404, 405):
                self._can_tokenize = False
                raise InvalidRequestError(
                    f"The upstream server {self.url} has no {path} endpoint."
                ) from None
            raise
        self._can_tokenize = True
        return out


def upstream_models(upstream: str, api_key: str | None) -> list[str]:
    """Every model the upstream lists now (serving them all needs it up at start)."""
    url, dialect = parse_upstream(upstream)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    paths = {"openai": "/v1/models", "ollama": "/api/tags"}
    for d in [dialect] if dialect else ["openai", "ollama"]:
        try:
            r = httpx.get(url + paths[d], headers=headers, timeout=5.0)
        except httpx.TransportError as e:
            raise ConfigError(
                f"Cannot list the models of {url} ({type(e).__name__}): is it running? "
                "Or name the model with --model."
            ) from None
        if r.status_code == 200:
            names = p.model_names(d, r.json())  # type: ignore[arg-type]
            if names:
                return names
    raise ConfigError(f"{url} lists no models; name the model with --model.")
