"""``create_app(settings, registry)``: the FastAPI app with every dialect mounted.

Services live on ``app.state`` (no module globals). Errors are rendered once,
here, in the shape of the dialect the request path belongs to.
"""

from __future__ import annotations

import itertools
import logging
import reprlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmkit.api import health, tokens
from llmkit.api.anthropic import routes as anthropic_routes
from llmkit.api.anthropic.errors import error_response as anthropic_error
from llmkit.api.conversations import routes as conversation_routes
from llmkit.api.conversations.service import Conversations
from llmkit.api.generation import INTERNAL_ERROR, ClientGone
from llmkit.api.guard import Guard, policy_for
from llmkit.api.local_catalog import LocalCatalog
from llmkit.api.mcp import routes as mcp_routes
from llmkit.api.mcp.servers import McpServers
from llmkit.api.metrics import Metrics, RequestCounter
from llmkit.api.metrics import router as metrics_router
from llmkit.api.ollama import embed_routes as ollama_embed_routes
from llmkit.api.ollama import manage_routes as ollama_manage_routes
from llmkit.api.ollama import routes as ollama_routes
from llmkit.api.ollama.errors import error_response as ollama_error
from llmkit.api.openai import embed_routes as openai_embed_routes
from llmkit.api.openai import routes as openai_routes
from llmkit.api.openai.errors import error_response as openai_error
from llmkit.api.request_id import RequestId
from llmkit.api.rerank import routes as rerank_routes
from llmkit.api.rerank.errors import error_response as cohere_error
from llmkit.api.responses import routes as responses_routes
from llmkit.api.web import routes as web_routes
from llmkit.config.settings import ServeSettings
from llmkit.engines.registry import ModelRegistry
from llmkit.errors import EngineError, InvalidRequestError, LlmkitError
from llmkit.memory.responses import ResponseStore
from llmkit.version import __version__

log = logging.getLogger("llmkit.api")


def create_app(
    settings: ServeSettings,
    registry: ModelRegistry,
    on_ready: Callable[[], None] | None = None,
    local_models: LocalCatalog | None = None,
) -> FastAPI:
    """``on_ready`` runs once every engine has loaded, before the first request.
    ``local_models`` is the local catalog served on demand and managed over the
    Ollama API (None: model management is off).
    ``settings.store`` is the conversation store of the conversations API, the chat
    page and stored responses (None: none; those routes then say so)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            app.state.conversations.close()
            await registry.close()
            if app.state.response_store is not None:
                app.state.response_store.close()

    app = FastAPI(title="llmkit", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.local_models = local_models
    app.state.metrics = Metrics()
    app.state.metrics.watch(registry)
    # Where /v1/responses keeps its responses; none without a store URL (then only
    # ``store: false`` requests are served).
    app.state.response_store = (
        ResponseStore(
            settings.store,
            max_count=settings.responses_max_count,
            max_age=settings.responses_max_age_s,
        )
        if settings.store
        else None
    )
    app.state.mcp = McpServers.from_specs(
        settings.mcp,
        allow_urls=settings.mcp_allow_urls,
        approval=settings.mcp_approval,
        timeout=settings.mcp_timeout,
        max_result=settings.mcp_max_result,
        on_call=app.state.metrics.mcp_call,
    )
    app.state.conversations = Conversations(settings.store, registry, settings.base_url)
    app.include_router(web_routes.router)  # before Ollama's GET /: browsers get the page
    app.include_router(conversation_routes.router)
    app.include_router(mcp_routes.router)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(tokens.router)
    app.include_router(openai_routes.router)
    app.include_router(responses_routes.router)
    app.include_router(ollama_routes.root)
    app.include_router(ollama_routes.router)
    app.include_router(openai_embed_routes.router)
    app.include_router(ollama_embed_routes.router)
    app.include_router(rerank_routes.router)
    app.include_router(anthropic_routes.router)
    app.include_router(ollama_manage_routes.router)

    # In front of every route: Host, Origin, key, rate and body size.
    app.add_middleware(Guard, policy=policy_for(settings), render=render)  # type: ignore[arg-type]
    # Outside the guard, so refusals are counted and carry a request id too.
    app.add_middleware(RequestCounter, metrics=app.state.metrics)  # type: ignore[arg-type]
    app.add_middleware(RequestId)  # type: ignore[arg-type]
    app.add_exception_handler(LlmkitError, _llmkit_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def render(request: Request, exc: LlmkitError) -> Response:
    """The one place an error becomes a response, in the request's dialect."""
    if exc.status < 500:
        log.info("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    if request.url.path.startswith("/api/"):
        return ollama_error(exc)
    if request.url.path.startswith("/v1/messages"):
        return anthropic_error(exc)
    if request.url.path.startswith("/v2/"):  # Cohere's API (rerank)
        return cohere_error(exc)
    return openai_error(exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads it: the client left before its answer was ready, and its work was
    # cancelled. The status (nginx's "client closed request") is for the log and metrics.
    return Response(status_code=499)


async def _llmkit_error(request: Request, exc: LlmkitError) -> Response:
    return render(request, exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return render(request, validation_to_error(request, exc.errors()))


def validation_to_error(request: Request, errors: Any) -> InvalidRequestError:
    errors = list(errors)
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        pos = first.get("loc", ("body", "?"))[-1]
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        return InvalidRequestError(
            f"The request body is not valid JSON ({reason} at position {pos})."
        )
    ctype = request.headers.get("content-type", "")
    if first.get("loc") == ("body",) and "json" not in ctype:
        return InvalidRequestError(
            "The request needs a JSON body with 'Content-Type: application/json'."
        )
    parts, param = [], None
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        param = param or loc or None
        got = f" (got {_short(e['input'])})" if "input" in e and e.get("type") != "missing" else ""
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}{got}")
    return InvalidRequestError("Invalid request: " + "; ".join(parts[:5]), param=param)


class _Short(reprlib.Repr):
    """A value as an error shows it: cut short (an oversized one is often why it
    is wrong), without writing out, or sorting, the whole of it first."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxstring = 3, 4, 6, 80

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in
                 itertools.islice(x.items(), self.maxdict)]  # fmt: skip
        return "{" + ", ".join(items) + (", ...}" if len(x) > self.maxdict else "}")


def _short(value: Any) -> str:
    return _Short().repr(value)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    err = LlmkitError(str(exc.detail))
    err.status = exc.status_code
    if exc.status_code == 404:
        err.message = f"No route {request.method} {request.url.path}."
    elif exc.status_code == 405:
        err.message = f"Method {request.method} is not allowed on {request.url.path}."
    return render(request, err)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return render(request, EngineError(INTERNAL_ERROR))


__all__ = ["create_app", "render"]
