"""The door of the server: one ASGI layer in front of every route that decides
whether a request gets in at all, before any route reads it.

In order: the ``Host`` header must name this server (the bound address, a
loopback name, an IP address, or a name the user allowed), so a web page cannot
reach a localhost server through a rebound DNS name; a browser request from a
foreign ``Origin`` is refused unless ``--cors-origin`` allows it (preflights for
allowed origins are answered here); the API key must match one of the server's
keys (compared in constant time, never logged), except on ``/health`` and
``GET /``, which probes need; a key (or, without keys, a client address) may
send at most ``--rate-limit`` requests a minute; and a body may not exceed
``--max-body-mb``, counted as it arrives, whatever ``Content-Length`` says.

Refusals are rendered in the dialect of the path, like every other error.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmkit.api.web.routes import asset_paths
from llmkit.config.settings import ServeSettings, is_loopback
from llmkit.errors import (
    AuthenticationError,
    ForbiddenError,
    LlmkitError,
    PayloadTooLargeError,
    RateLimitError,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Render = Callable[[Request, LlmkitError], Response]

CORS_METHODS = "GET, POST, DELETE, HEAD, OPTIONS"
# What probes need without a key: liveness, and Ollama's "is it running?".
OPEN_PATHS = frozenset({("GET", "/health"), ("HEAD", "/health"), ("GET", "/"), ("HEAD", "/")})
# Bodies the size of a model: Ollama's blob uploads (their digest is checked as they arrive).
UNLIMITED_BODIES = ("/api/blobs/",)


@dataclass(frozen=True)
class Policy:
    """What the door checks; built from the serve settings."""

    keys: tuple[str, ...] = ()
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()  # "*" allows any name
    cors_origins: tuple[str, ...] = ()  # "*" allows any origin
    max_body_bytes: int = 16 * 1024 * 1024
    rate_per_minute: int | None = None
    open_paths: frozenset[tuple[str, str]] = field(default_factory=lambda: OPEN_PATHS)


def _host_name(header: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    return h.rpartition(":")[0] if h.count(":") == 1 else h


class Guard:
    def __init__(self, app: ASGIApp, policy: Policy, render: Render) -> None:
        self.app = app
        self.policy = policy
        self.render = render
        self._names = self._own_names(policy.bound_host)
        self._buckets: dict[str, tuple[float, float]] = {}  # who -> (tokens, last time)

    @staticmethod
    def _own_names(bound: str) -> frozenset[str]:
        names = {bound.lower()}
        if bound in ("0.0.0.0", "::", ""):
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        return frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            preflight = self._check(request)
        except LlmkitError as e:
            await self.render(request, e)(scope, receive, send)
            return
        if preflight is not None:
            await preflight(scope, receive, send)
            return
        big = request.url.path.startswith(UNLIMITED_BODIES)
        if "content-length" not in request.headers and not big:
            try:  # a chunked body: read it here, counting, so an oversized one gets a 413
                receive = await self._buffered(receive)
            except PayloadTooLargeError as e:
                await self.render(request, e)(scope, receive, send)
                return
        origin = request.headers.get("origin")
        cors = self._cors_headers(origin) if origin and self._origin_allowed(request) else []
        await self.app(scope, receive, self._with_headers(send, cors))

    # -- the checks -----------------------------------------------------------------

    def _check(self, request: Request) -> Response | None:
        self._check_host(request)
        origin = request.headers.get("origin")
        if origin and not self._origin_allowed(request):
            raise ForbiddenError(
                f"Requests from web pages at {origin} are not allowed; start the server "
                "with --cors-origin ORIGIN to allow them."
            )
        if request.method == "OPTIONS" and origin:  # a CORS preflight: no key is sent
            asked = request.headers.get("access-control-request-headers", "")
            headers = {k.decode(): v.decode() for k, v in self._cors_headers(origin, asked)}
            return Response(status_code=204, headers=headers)
        if (request.method, request.url.path) not in self.policy.open_paths:
            who = self._check_key(request)
            self._check_rate(who)
        length = request.headers.get("content-length")
        big = request.url.path.startswith(UNLIMITED_BODIES)
        if length and length.isdigit() and int(length) > self.policy.max_body_bytes and not big:
            raise self._too_large()
        return None

    def _check_host(self, request: Request) -> None:
        header = request.headers.get("host")
        if header is None or "*" in self.policy.allowed_hosts:
            return
        name = _host_name(header)
        if is_loopback(name) or name in self._names or name in self.policy.allowed_hosts:
            return
        try:
            ipaddress.ip_address(name)  # an address: no DNS name to rebind
            return
        except ValueError:
            pass
        raise ForbiddenError(
            f"Host '{name}' is not this server's name; if clients reach it by that name, "
            f"start it with --allowed-host {name}."
        )

    def _origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("origin", "")
        allowed = self.policy.cors_origins
        if "*" in allowed or origin in allowed:
            return True
        # A page the server itself serves calls it from its own origin.
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1].rstrip("/").lower() == host.lower()

    def _cors_headers(self, origin: str, asked: str = "") -> list[tuple[bytes, bytes]]:
        if not self.policy.cors_origins:
            return []
        # The SDKs send headers of their own from a browser (anthropic-version,
        # x-stainless-*): an allowed origin may send whatever its preflight asks for.
        allow = asked.strip() or "authorization, content-type, x-api-key, anthropic-version"
        return [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-methods", CORS_METHODS.encode()),
            (b"access-control-allow-headers", allow.encode("latin-1")),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
        ]

    def _check_key(self, request: Request) -> str:
        """The key the request carries, checked; without keys, the client's address."""
        client = request.client.host if request.client else "?"
        if not self.policy.keys:
            return client
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        token = token or request.headers.get("x-api-key", "").strip()
        if not token:
            raise AuthenticationError(
                "Missing API key: send 'Authorization: Bearer <key>' (the key given to --api-key)."
            )
        # Every key is compared, so the time taken says nothing about which matched.
        matched = [secrets.compare_digest(token.encode(), k.encode()) for k in self.policy.keys]
        if not any(matched):
            raise AuthenticationError("Incorrect API key provided.")
        return "key:" + str(matched.index(True))

    def _check_rate(self, who: str) -> None:
        rate = self.policy.rate_per_minute
        if not rate:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(who, (float(rate), now))
        tokens = min(float(rate), tokens + (now - last) * rate / 60.0)
        if tokens < 1.0:
            wait = max(1, int((1.0 - tokens) * 60.0 / rate + 0.999))
            self._buckets[who] = (tokens, now)
            raise RateLimitError(
                f"Rate limit reached: at most {rate} requests a minute; retry in {wait} s.",
                retry_after=wait,
            )
        self._buckets[who] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # forget idle clients rather than grow for ever
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}

    def _too_large(self) -> PayloadTooLargeError:
        mb = self.policy.max_body_bytes / (1024 * 1024)
        return PayloadTooLargeError(
            f"The request body is larger than {mb:g} MiB; send less, or start the server "
            "with a larger --max-body-mb."
        )

    # -- wrapping the app's channels ------------------------------------------------

    async def _buffered(self, receive: Receive) -> Receive:
        """The whole body, read at most up to the limit; then replayed to the app
        (uvicorn holds a body with a Content-Length to that length itself)."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.policy.max_body_bytes:
                raise self._too_large()
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return replay

    @staticmethod
    def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
        if not headers:
            return send

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        return sending


def policy_for(settings: ServeSettings) -> Policy:
    return Policy(
        keys=settings.api_keys(),
        bound_host=settings.host,
        allowed_hosts=tuple(h.lower() for h in settings.allowed_host),
        cors_origins=tuple(o.rstrip("/") for o in settings.cors_origin),
        max_body_bytes=int(settings.max_body_mb * 1024 * 1024),
        rate_per_minute=settings.rate_limit,
        open_paths=OPEN_PATHS
        | asset_paths()  # the chat page's files: no data, and <script src> sends no key
        | ({("GET", "/metrics")} if settings.metrics_public else set()),
    )
