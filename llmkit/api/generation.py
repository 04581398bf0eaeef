"""Running generations for a route, whatever its dialect: the one path every
generating route takes.

``start`` resolves a request to its model and its engine requests (the registry
lookup, the request limits, the metrics' watcher); the ``Generation`` it returns
runs ``whole`` (cancelled if the client leaves: ``ClientGone``, a 499 mapped once
on the app) or ``streamed``, and the route turns what comes out into its
dialect with the pure functions of its ``convert``.

A request for ``n`` choices becomes ``n`` engine generations that run side by
side. ``open_streams`` waits for each one's first chunk before anything is sent,
so a request the engine refuses (too long, bad schema) still gets a plain error
status instead of a stream that starts and then fails. A failure after that
point becomes the stream's last event (``ending_in_error``), in either dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

from llmkit.api import limits
from llmkit.api.limits import Sizes
from llmkit.api.logprobs import refuse_logprobs
from llmkit.api.reasoning import refuse_thinking
from llmkit.core.types import Chunk, GenerateRequest, Logprob, ToolCallDelta
from llmkit.engines.base import Engine
from llmkit.engines.local import LocalEngine
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import EngineError, InvalidRequestError, LlmkitError, ThinkingUnsupportedError

T = TypeVar("T")
log = logging.getLogger("llmkit.api")
INTERNAL_ERROR = "Internal server error; see the server log."
# Quiet unless ``--log-requests`` turns it up: prompts are the users' data.
requests_log = logging.getLogger("llmkit.requests")
requests_log.setLevel(logging.WARNING)


Watch = Callable[[], Callable[[Chunk], None]]


async def _watched(gen: AsyncIterator[Chunk], see: Callable[[Chunk], None]) -> AsyncIterator[Chunk]:
    async for chunk in gen:
        see(chunk)
        yield chunk


async def open_streams(
    engine: Engine, reqs: list[GenerateRequest], watch: Watch | None = None
) -> AsyncIterator[tuple[int, Chunk]]:
    """Start every generation, wait for each first chunk, then merge them as
    ``(choice index, chunk)`` in the order chunks arrive. ``watch`` makes one
    observer per generation, which sees each of its chunks (the metrics)."""
    if requests_log.isEnabledFor(logging.INFO):
        for r in reqs:
            requests_log.info(
                "request: %s", json.dumps(dataclasses.asdict(r), ensure_ascii=False, default=_bytes)
            )
    _refuse_tools(engine, reqs)
    refuse_logprobs(engine, reqs)
    gens = [engine.generate(r) for r in reqs]
    if watch is not None:
        gens = [_watched(g, watch()) for g in gens]
    try:
        firsts = await asyncio.gather(*(anext(g) for g in gens))
    except BaseException:
        await asyncio.gather(*(g.aclose() for g in gens), return_exceptions=True)
        raise
    return _merge(gens, firsts)


def _bytes(value: object) -> str:
    # An image's bytes: the log says how many, never what they are (its sha256 is beside).
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(f"not JSON: {type(value).__name__}")


def _refuse_tools(engine: Engine, reqs: list[GenerateRequest]) -> None:
    """A 400 for tools (or calls in the history) sent to an engine that would drop them."""
    if engine.supports_tools:
        return
    for r in reqs:
        if r.tools or any(m.tool_calls for m in r.messages or ()):
            raise InvalidRequestError(
                f"tools are not supported by the {engine.info.engine} engine yet.", param="tools"
            )


async def _merge(
    gens: list[AsyncIterator[Chunk]], firsts: list[Chunk]
) -> AsyncIterator[tuple[int, Chunk]]:
    queue: asyncio.Queue[tuple[int, Chunk | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, gen: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in gen:
                await queue.put((i, chunk))
            await queue.put((i, None))
        except Exception as e:
            await queue.put((i, e))

    tasks: list[asyncio.Task[None]] = []
    try:
        for i, first in enumerate(firsts):
            yield i, first
        live = {i for i, f in enumerate(firsts) if f.finish_reason is None}
        tasks = [asyncio.create_task(pump(i, gens[i])) for i in live]
        while live:
            i, item = await queue.get()
            if item is None:
                live.discard(i)
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for g in gens:
            with contextlib.suppress(Exception):
                await g.aclose()  # type: ignore[attr-defined]


def within_limits(request: Request, reqs: list[GenerateRequest]) -> list[GenerateRequest]:
    """``reqs``, or a 400 when one carries more messages than ``--max-messages``
    once built (a stored history may have joined the request's own)."""
    limit = request.app.state.settings.max_messages
    for r in reqs:
        if r.messages is not None and len(r.messages) > limit:
            raise InvalidRequestError(
                f"The request has {len(r.messages)} messages; this server takes at most "
                f"{limit} (--max-messages).",
                param="messages",
            )
    return reqs


def watcher(request: Request, model: str) -> Watch:
    """The metrics' observer for generations of ``model`` in this app."""
    metrics = request.app.state.metrics
    return lambda: metrics.observer(model)


async def collect(
    engine: Engine, reqs: list[GenerateRequest], watch: Watch | None = None
) -> list[tuple[str, Chunk]]:
    """Run to the end; per choice, the whole text and the final chunk (which
    carries every tool-call delta and log-probability of the choice, and its
    whole thinking as ``reasoning``)."""
    texts: list[list[str]] = [[] for _ in reqs]
    thought: list[list[str]] = [[] for _ in reqs]
    calls: list[list[ToolCallDelta]] = [[] for _ in reqs]
    scored: list[list[Logprob]] = [[] for _ in reqs]
    last: list[Chunk] = [Chunk() for _ in reqs]
    stream = await open_streams(engine, reqs, watch)
    async for i, chunk in stream:
        texts[i].append(chunk.text)
        thought[i].append(chunk.reasoning)
        calls[i].extend(chunk.tool_calls)
        scored[i].extend(chunk.logprobs)
        if chunk.finish_reason is not None:
            last[i] = chunk
    return [
        (
            "".join(t),
            dataclasses.replace(c, tool_calls=tuple(d), logprobs=tuple(lps), reasoning="".join(r)),
        )
        for t, r, d, lps, c in zip(texts, thought, calls, scored, last, strict=True)
    ]


class ClientGone(Exception):
    """The client hung up before its answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T], poll: float = 0.25) -> T:
    """Await ``work`` but give up (and cancel it, freeing the engine) if the client leaves."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def registry(request: Request) -> ModelRegistry:
    """The models this app serves."""
    return request.app.state.registry


def served(request: Request, name: str) -> ServedModel:
    """The model ``name`` names on this server (a 404 naming those it serves)."""
    return registry(request).get(name)


@dataclass(frozen=True)
class Generation:
    """A request resolved to its model and its engine requests, ready to run.

    ``think_param`` and ``asked``: the field that asked for thinking and the
    model's name as the request gave it, so that an engine's own refusal of
    thinking (``ThinkingUnsupportedError``) names them as ``start``'s does."""

    request: Request
    model: ServedModel
    reqs: list[GenerateRequest]
    think_param: str = "think"
    asked: str = ""

    @property
    def engine(self) -> Engine:
        return self.model.engine

    async def streamed(self) -> AsyncIterator[tuple[int, Chunk]]:
        """Start every generation (a refusal is still a plain error status) and
        merge their chunks as ``(choice index, chunk)``: ``open_streams``."""
        with self._named_refusal():
            return await open_streams(
                self.engine, self.reqs, watcher(self.request, self.model.name)
            )

    async def whole(self) -> list[tuple[str, Chunk]]:
        """Every choice's text and final chunk (``collect``), or ``ClientGone``."""
        watch = watcher(self.request, self.model.name)
        with self._named_refusal():
            return await self.unless_gone(collect(self.engine, self.reqs, watch))

    @contextlib.contextmanager
    def _named_refusal(self) -> Iterator[None]:
        try:
            yield
        except ThinkingUnsupportedError as e:
            raise ThinkingUnsupportedError(
                self.asked or self.model.name, param=self.think_param
            ) from e

    async def unless_gone(self, work: Awaitable[T]) -> T:
        """``work``, cancelled (freeing the engine) with ``ClientGone`` if the client leaves."""
        return await unless_disconnected(self.request, work)


def start(
    request: Request,
    model: str | ServedModel,
    make: Callable[[], list[GenerateRequest]],
    sizes: Sizes | None,
    *,
    think_param: str = "think",
    asked_as: str | None = None,
) -> Generation:
    """Resolve a request: its sizes checked against this server's limits before
    anything is built (``make`` builds n requests per prompt, and a huge n must
    cost nothing), its model (by name, or already found), then its engine
    requests as ``make`` builds them. ``sizes`` is None only where the route
    checked them before work of its own (Responses reads a stored history first).
    The model's own defaults (its Modelfile) are applied by the served model
    itself, once for every dialect. Thinking asked of a model that cannot think
    is refused here, before any work, naming ``think_param`` (the field that asked
    for it) and the model as the request named it (``asked_as``, where ``model``
    is already found), where the model is known to this server (``_describes``);
    elsewhere the engine refuses it itself, named the same (``Generation``)."""
    if sizes is not None:
        limits.check(request, sizes)
    found = served(request, model) if isinstance(model, str) else model
    reqs = within_limits(request, make())
    name = model if isinstance(model, str) else asked_as or found.name
    if _describes(found):
        refuse_thinking(name, found.info, reqs, think_param)
    return Generation(request, found, reqs, think_param, name)


def _describes(model: ServedModel) -> bool:
    """Whether the model's ``capabilities`` say for sure if it can think: a loaded
    model run in this process (its family read from its own template). A remote
    server (upstream, vLLM's child) decides for itself and answers with its own
    error, and a model not loaded yet is described only as far as known."""
    return model.loaded and isinstance(model.inner, LocalEngine)


def as_llmkit_error(exc: Exception, where: str) -> LlmkitError:
    """The error a client is shown. An llmkit error says what went wrong; anything
    else is a bug or a crash: its traceback goes to the server log, and the client
    gets a generic message (internals are no business of theirs)."""
    if isinstance(exc, LlmkitError):
        return exc
    log.error("unexpected error %s", where, exc_info=exc)
    return EngineError(INTERNAL_ERROR)


async def ending_in_error(
    events: AsyncIterable[T], render: Callable[[LlmkitError], T]
) -> AsyncIterator[T]:
    """``events``, then, if they fail, the failure rendered as one last event.

    Once a stream has started its status and headers are sent, so the error can
    only travel in the body; a cut stream would leave the client guessing."""
    try:
        async for event in events:
            yield event
    except Exception as exc:  # any failure, not only ours: the client must hear of it
        yield render(as_llmkit_error(exc, "in a stream already under way"))
