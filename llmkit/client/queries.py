"""The questions a client asks a server, written once for the blocking and the
asyncio client: which dialect it speaks, which models it serves, what it says of
one, how it tokenizes, and what to send for a reply.

Each question is a generator that yields the HTTP calls it needs, as
``(method, path, body)``, and is sent their parsed answers back (or thrown the
llmkit error a call failed with); ``client.http`` drives it with blocking calls
or awaits. httpx's failures become llmkit's here, once, in the manner of httpx's
own ``map_exceptions``: a small table, most specific class first.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from llmkit.client import protocol as p
from llmkit.client.anthropic import VERSION as ANTHROPIC_VERSION
from llmkit.client.bodies import Body, Path, Think, openai_content, think_fields, to_request
from llmkit.client.protocol import Dialect
from llmkit.core.types import EngineInfo, GenerateRequest, Message, SamplingParams
from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    LlmkitError,
    ModelNotFoundError,
    UnreachableError,
    UpstreamError,
    UpstreamTimeoutError,
)

T = TypeVar("T")
# A query yields (method, path, body) and is sent the parsed answer, or an error.
Call = tuple[str, str, dict[str, Any] | None]
Query = Generator[Call, Any, T]


@dataclass(frozen=True)
class Wording:
    """How the client's errors name the server and what they tell the reader to do.
    ``llmkit chat`` talks to someone at a terminal (the default); the upstream
    engine's errors go to an API caller and the server's log, in its own words.
    ``{url}`` and ``{error}`` are filled in."""

    subject: str = "{url}"  # at the start of a sentence
    name: str = "{url}"  # inside one
    unreachable: str = (
        "Cannot reach {url} ({error}). Is the server running? "
        "Start one with `llmkit serve`, or give its address with --url."
    )
    no_dialect: str = "give the right URL, or the dialect with --dialect."


def _unreachable(w: Wording, url: str, e: Exception) -> LlmkitError:
    return UnreachableError(w.unreachable.format(url=url, error=f"{type(e).__name__}: {e}"))


def _stopped(w: Wording, url: str, e: Exception) -> LlmkitError:
    return UpstreamTimeoutError(f"{w.subject.format(url=url)} stopped answering mid-reply.")


def _broken(w: Wording, url: str, e: Exception) -> LlmkitError:
    where = w.name.format(url=url)
    return UpstreamError(f"The connection to {where} broke mid-reply ({type(e).__name__}).")


# Most specific first: a timeout while connecting means nobody answers, one
# while waiting for the reply a server that stopped.
FAILURES = (
    (httpx.ConnectError, _unreachable),
    (httpx.ConnectTimeout, _unreachable),
    (httpx.TimeoutException, _stopped),
    (httpx.TransportError, _broken),
)


class Queries:
    """Everything but the transport: shared by the blocking and asyncio clients."""

    def __init__(
        self, url: str, *, api_key: str | None, dialect: Dialect | None, wording: Wording
    ) -> None:
        if dialect is not None and dialect not in p.DIALECTS:
            raise InvalidRequestError(
                f"dialect must be one of {', '.join(p.DIALECTS)}; got '{dialect}'"
            )
        self.url, named = p.parse_url(url)
        self._dialect: Dialect | None = dialect or named
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if self._dialect == "anthropic":  # its own key header, and a version on every call
            self.headers = {"x-api-key": api_key} if api_key else {}
            self.headers["anthropic-version"] = ANTHROPIC_VERSION
        self.wording = wording
        self._listing: Any = None
        self._ctx: dict[str, int | None] = {}
        self._can_tokenize: bool | None = None

    @property
    def server(self) -> str:
        """The server as messages start with it."""
        return self.wording.subject.format(url=self.url)

    @contextmanager
    def failures(self) -> Iterator[None]:
        """httpx's failures, raised as llmkit's."""
        try:
            yield
        except httpx.TransportError as e:
            for cls, make in FAILURES:
                if isinstance(e, cls):
                    raise make(self.wording, self.url, e) from e
            raise

    def answer(self, r: httpx.Response, raw: bytes) -> Any:
        if r.status_code >= 400:
            raise p.error_from(p.parse_body(raw), r.status_code, self.server)
        return p.parse_body(raw)

    # -- the questions ----------------------------------------------------------

    def q_dialect(self) -> Query[Dialect]:
        """Given, or found by asking. A server that speaks both (llmkit, Ollama) is
        reached in the one that tells more: OpenAI's when its listing has
        ``max_model_len`` (llmkit, vLLM: /tokenize too), else Ollama's (the
        context from /api/show, a ``num_ctx`` per request)."""
        if self._dialect is None:
            found: dict[Dialect, Any] = {}
            refused: LlmkitError | None = None
            for dialect in p.DETECTED:
                try:
                    listing = yield ("GET", p.LISTING[dialect], None)
                except AuthenticationError as e:
                    refused = e  # the key is wrong: say so, unless the other answers
                    continue
                except UnreachableError:
                    raise
                except LlmkitError:
                    continue
                if p.is_listing(listing):
                    found[dialect] = listing
                    if dialect == "openai" and p.tells_context(listing):
                        break  # as rich as it gets: no need to ask the other
            if not found:
                raise refused or UpstreamError(
                    f"{self.url} answers neither /v1/models (OpenAI-style) nor /api/tags "
                    f"(Ollama-style); {self.wording.no_dialect}"
                )
            rich = "openai" in found and (len(found) == 1 or p.tells_context(found["openai"]))
            self._dialect = "openai" if rich else "ollama"
            self._listing = found[self._dialect]
        return self._dialect

    def q_listing(self) -> Query[Any]:
        if self._listing is None:
            d = yield from self.q_dialect()
            self._listing = yield ("GET", p.LISTING[d], None)
        return self._listing

    def q_models(self) -> Query[list[str]]:
        d = yield from self.q_dialect()
        return p.model_names(d, (yield from self.q_listing()))

    def q_context_length(self, model: str) -> Query[int | None]:
        if model not in self._ctx:
            if (yield from self.q_dialect()) != "ollama":
                self._ctx[model] = p.openai_context_length((yield from self.q_listing()), model)
            else:
                show = yield ("POST", "/api/show", {"model": model})
                ps = yield ("GET", "/api/ps", None)
                self._ctx[model] = p.ollama_context_length(show, ps, model)
        return self._ctx[model]

    def q_model_info(self, model: str) -> Query[EngineInfo]:
        """What the server says of ``model``; ``engine`` is left to the caller."""
        listing = yield from self.q_listing()
        if (yield from self.q_dialect()) != "ollama":
            return p.openai_info(listing, model)
        show = yield ("POST", "/api/show", {"model": model})
        ps = yield ("GET", "/api/ps", None)
        return p.ollama_info(listing, show, ps, model)

    def q_tokenizer(self, path: str, body: dict[str, Any]) -> Query[Any]:
        """``/tokenize`` or ``/detokenize`` where the server has them (llmkit, vLLM),
        with the model's own tokenizer and chat template; None elsewhere."""
        if self._can_tokenize is False or (yield from self.q_dialect()) != "openai":
            return None
        try:
            out = yield ("POST", path, body)
        except LlmkitError as e:
            if e.status in (404, 405) and not isinstance(e, ModelNotFoundError):
                self._can_tokenize = False
                return None
            raise
        self._can_tokenize = True
        return out

    def q_tokenize(
        self,
        model: str,
        *,
        text: str | None = None,
        messages: list[Message] | None = None,
        special: bool | None = None,
    ) -> Query[dict[str, Any] | None]:
        """The server's ``{"tokens", "count"}`` for a text or chat messages."""
        body: dict[str, Any] = {"model": model}
        if messages is not None:
            body["messages"] = [{"role": m.role, "content": openai_content(m)} for m in messages]
        else:
            body["prompt"] = text
        if special is not None:
            body["add_special_tokens"] = special
        return (yield from self.q_tokenizer("/tokenize", body))

    def q_detokenize(self, model: str, ids: list[int]) -> Query[str | None]:
        out = yield from self.q_tokenizer("/detokenize", {"model": model, "tokens": ids})
        return None if out is None else str(out["prompt"])

    # Ollama's model management routes (llmkit serves them too): ps, stop, version.

    def q_running(self) -> Query[list[dict[str, Any]]]:
        """The models loaded now, as ``/api/ps`` lists them."""
        return list((yield ("GET", "/api/ps", None)).get("models", []))

    def q_unload(self, model: str) -> Query[Any]:
        """Unload ``model`` now, the way ``ollama stop`` asks: an empty generate
        with ``keep_alive`` 0."""
        return (yield ("POST", "/api/generate", {"model": model, "keep_alive": 0}))

    def q_version(self) -> Query[str]:
        """An Ollama's version, or an llmkit's with the Ollama API level it serves."""
        body = yield ("GET", "/api/version", None)
        if "llmkit" in body:
            return f"llmkit {body['llmkit']} (Ollama API {body.get('version', '?')})"
        return str(body.get("version", "?"))

    def q_request(
        self, model: str, req: GenerateRequest, send: Collection[str] | None = None
    ) -> Query[tuple[Dialect, Path, Body]]:
        dialect = yield from self.q_dialect()
        return (dialect, *to_request(dialect, model, req, send=send))

    def q_chat(
        self,
        model: str,
        messages: list[Message],
        max_tokens: int | None,
        temperature: float | None,
        think: Think = None,
    ) -> Query[tuple[Dialect, Path, Body]]:
        """A chat turn as ``Chat`` sends it: what its user set, the rest the server's."""
        thinking = think_fields(think)  # a bad value is refused before any call
        ollama = (yield from self.q_dialect()) == "ollama"
        req = GenerateRequest(
            **thinking,
            messages=tuple(messages),
            max_tokens=max_tokens,
            sampling=SamplingParams() if temperature is None else SamplingParams(temperature),
            # Ollama sizes its context by num_ctx: ask for the one we budget for.
            context_limit=(yield from self.q_context_length(model)) if ollama else None,
        )
        send = () if temperature is None else ("temperature",)
        return (yield from self.q_request(model, req, send))
