"""Which engine answers which served model name, and when each engine is loaded.

A model loads at start-up, or on its first request when it is served with
``load: first-use``; an idle one is unloaded after its ``keep_alive``, as Ollama
does: 0 unloads as soon as the last request ends, None keeps it loaded for good,
and an Ollama request's own ``keep_alive`` replaces the model's until another
request says otherwise.

Routes see none of this. ``ServedModel.engine`` is a ``ManagedEngine``: it loads
the real engine before the first chunk (so a model that fails to load answers
that request with the reason) and counts what runs on it, so an engine is never
closed under a running request.

It is also where a request meets its model, whatever its dialect: the model's
``Modelfile`` (a made model's, an Ollama model's layers) fills what the request
left out, then the request's dialect's defaults fill the rest of its sampling
(``GenerateRequest.settled``), and the served model's thinking budget
(``--reasoning-budget``) applies to a request that names neither a budget nor an
effort. This is the one place all of it happens. Thinking asked of a model that
cannot think is refused here in the served model's own name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from llmkit.core.types import (
    Chunk,
    EmbedRequest,
    EmbedResult,
    EngineInfo,
    GenerateRequest,
    Image,
    RerankRequest,
    RerankResult,
)
from llmkit.engines.base import Engine
from llmkit.errors import (
    ModelNotFoundError,
    ServerBusyError,
    ThinkingUnsupportedError,
    VisionUnsupportedError,
)
from llmkit.models.modelfile import Modelfile

log = logging.getLogger("llmkit.registry")


class ServedModel:
    def __init__(
        self,
        names: list[str],
        engine: Engine,
        *,
        created: int = 0,
        keep_alive: float | None = None,
        preload: bool = True,
        describe: EngineInfo | None = None,
        modelfile: Modelfile | None = None,
        on_demand: bool = False,
        reasoning_budget: int | None = None,
    ) -> None:
        """``describe``: what listings show of the model before it first loads;
        ``modelfile``: the model's defaults, applied to each request (``ManagedEngine``);
        ``on_demand``: served because a request named it, not by the configuration;
        ``reasoning_budget``: the thinking tokens a request that names neither a
        budget nor an effort may take (None or negative: no limit)."""
        self.names = names  # the first is the canonical name, the rest aliases
        self.inner = engine
        self.engine: Engine = ManagedEngine(self, engine)
        self.created = created
        self.keep_alive = keep_alive  # seconds idle before unloading; None: never
        self.preload = preload
        self.modelfile = modelfile
        self.on_demand = on_demand
        self.reasoning_budget = reasoning_budget
        self.last_used = 0.0  # monotonic time the last request on it ended
        # Set by the registry: frees room (unloads idle models) before this one loads.
        self.before_load: Callable[[ServedModel], Awaitable[None]] | None = None
        self.loaded = False
        self.loading = False
        self.load_error: str | None = None  # why the last load failed, until one succeeds
        self.active = 0  # generations and token counts running on the engine now
        self.loads = 0  # how many times the engine has been loaded
        self.last_load_ns = 0  # how long the last load took
        self.expires_at: float | None = None  # wall-clock time of the next unload
        self._hold = keep_alive  # the keep_alive in force (a request may change it)
        self._info = describe
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.names[0]

    async def state(self) -> str:
        """loading, ready, failed (its last load, or the engine now: a vLLM child
        restarting), or unloaded (not yet used, or idle past its keep_alive)."""
        if self.loading:
            return "loading"
        if self.loaded:
            return "ready" if await self.inner.health() else "failed"
        return "failed" if self.load_error else "unloaded"

    @property
    def info(self) -> EngineInfo:
        """The engine's own description once it has loaded, else what is known before."""
        if self.loaded:
            return self.inner.info
        if self._info is None:
            return EngineInfo(engine="?", model=self.name, context_length=0)
        return self._info

    async def ensure_loaded(self) -> None:
        if self.loaded:
            return
        async with self._lock:
            if self.loaded:
                return
            if self.before_load is not None:
                await self.before_load(self)
            log.info("loading %s", self.name)
            started = time.perf_counter_ns()
            self.loading = True
            try:
                await self.inner.start()
            except BaseException as e:
                self.load_error = getattr(e, "message", None) or str(e) or type(e).__name__
                with contextlib.suppress(Exception):
                    await self.inner.close()
                raise
            finally:
                self.loading = False
            self.load_error = None
            self.last_load_ns = time.perf_counter_ns() - started
            self.loads += 1
            self.loaded = True
            self._info = self.inner.info
        if self.active == 0:
            self._schedule()

    async def unload(self, *, force: bool = False) -> bool:
        """Close the engine unless a request is using it (``force``: at shutdown)."""
        async with self._lock:
            if not self.loaded or (self.active and not force):
                return False
            self._cancel_timer()
            self.loaded = False
            self.expires_at = None
            await self.inner.close()
            if not force:
                log.info("unloaded %s (idle; keep_alive %s)", self.name, _seconds(self._hold))
            # A request's keep_alive (`llmkit stop`'s 0) has done its job: the next load,
            # from a request that names none (OpenAI's), keeps the model's own.
            self._hold = self.keep_alive
            return True

    def hold(self, keep_alive: float | None) -> None:
        """Keep the model loaded this long after its last request (None: for good);
        it takes effect when the requests running now (or about to) have ended."""
        self._hold = keep_alive

    async def keep(self, keep_alive: float | None) -> bool:
        """Load the model and keep it for ``keep_alive`` from now, or unload it now
        when that is 0 (Ollama's answer to an empty prompt); True when loaded."""
        self.hold(keep_alive)
        if keep_alive == 0:
            await self.unload()
            return self.loaded
        await self.ensure_loaded()
        if self.active == 0:
            self._schedule()
        return True

    @contextlib.asynccontextmanager
    async def using(self) -> AsyncIterator[None]:
        """Mark the engine busy (no unload), loading it first when needed."""
        self.active += 1
        self._cancel_timer()
        self.expires_at = None
        try:
            await self.ensure_loaded()
            yield
        finally:
            self.active -= 1
            self.last_used = time.monotonic()
            if self.active == 0:
                self._schedule()

    def _schedule(self) -> None:
        self._cancel_timer()
        if not self.loaded or self._hold is None:
            self.expires_at = None
            return
        loop = asyncio.get_running_loop()
        self.expires_at = time.time() + self._hold
        self._timer = loop.call_later(self._hold, self._expire)

    def _expire(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.unload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _seconds(v: float | None) -> str:
    return "forever" if v is None else f"{v:g}s"


class ManagedEngine(Engine):
    """The face a served model shows the routes: the real engine, loaded on demand.

    Only what must load the engine first and count as use is wrapped here (the
    token and generation calls), and what must answer while the engine is not
    loaded (``info``, ``health``, ``load``, ``kv_cache``, ``finish_all``, lifetime); anything
    else an engine offers is the inner engine's own, looked up on it.
    """

    def __init__(self, served: ServedModel, inner: Engine) -> None:
        self.served = served
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        # Only called for what this class does not define: an engine's own extras.
        if name in ("inner", "served"):  # not set yet (a copy): no endless recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _resolved(self, req: GenerateRequest) -> GenerateRequest:
        """The request as the engine runs it: the model's Modelfile, then the dialect's
        defaults, fill what the request left out (its own values win)."""
        mf = self.served.modelfile
        req = (req if mf is None else mf.apply(req)).settled()
        budget = self.served.reasoning_budget
        if budget is not None and budget >= 0 and req.reasoning_budget is None and not req.effort:
            req = dataclasses.replace(req, reasoning_budget=budget)
        return req

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        req = self._resolved(req)
        async with self.served.using():
            try:
                async for chunk in self.inner.generate(req):
                    yield chunk
            except ThinkingUnsupportedError as e:  # in the name the client used for it
                raise ThinkingUnsupportedError(self.served.name, param=e.param) from None
            except VisionUnsupportedError as e:
                raise VisionUnsupportedError(self.served.name, e.supports, param=e.param) from None

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        async with self.served.using():
            return await self.inner.tokenize(text, special=special)

    async def detokenize(self, ids: list[int]) -> str:
        async with self.served.using():
            return await self.inner.detokenize(ids)

    async def encode(self, req: GenerateRequest) -> list[int] | None:
        req = self._resolved(req)
        async with self.served.using():
            return await self.inner.encode(req)

    async def image_tokens(self, image: Image) -> int:
        if "vision" not in self.served.info.capabilities:
            raise VisionUnsupportedError(self.served.name, list(self.served.info.capabilities))
        async with self.served.using():
            return await self.inner.image_tokens(image)

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        async with self.served.using():
            return await self.inner.embed(req)

    async def rerank(self, req: RerankRequest) -> RerankResult:
        async with self.served.using():
            return await self.inner.rerank(req)

    @property
    def info(self) -> EngineInfo:
        return self.served.info

    @property
    def supports_tools(self) -> bool:  # type: ignore[override]
        return self.inner.supports_tools

    @property
    def supports_logprobs(self) -> bool:  # type: ignore[override]
        return self.inner.supports_logprobs

    async def start(self) -> None:
        await self.served.ensure_loaded()

    async def close(self) -> None:
        await self.served.unload(force=True)

    async def health(self) -> bool:
        return await self.inner.health() if self.served.loaded else True

    def finish_all(self) -> int:
        return self.inner.finish_all() if self.served.loaded else 0

    def load(self) -> tuple[int, int]:
        return self.inner.load() if self.served.loaded else (0, 0)

    def kv_cache(self) -> dict[str, int]:
        return self.inner.kv_cache() if self.served.loaded else {}

    def speculation(self) -> dict[str, int]:
        return self.inner.speculation() if self.served.loaded else {}


class ModelRegistry:
    """The served models by name. ``fallback`` serves a name no model has yet (a
    model in the local catalog, on demand); ``max_loaded`` caps the models loaded
    at once: loading one more first unloads the one idle longest, as Ollama's
    ``OLLAMA_MAX_LOADED_MODELS`` does."""

    def __init__(
        self,
        models: list[ServedModel] | None = None,
        *,
        fallback: Callable[[str], ServedModel | None] | None = None,
        max_loaded: int | None = None,
    ) -> None:
        self.models: list[ServedModel] = []
        self.fallback = fallback
        self.max_loaded = max_loaded
        for m in models or []:
            self.add(m)

    def add(self, model: ServedModel) -> None:
        taken = set(self.names())
        clash = taken.intersection(model.names)
        if clash:
            raise ValueError(f"served model name(s) already in use: {', '.join(sorted(clash))}")
        model.before_load = self._make_room
        self.models.append(model)

    def remove(self, model: ServedModel) -> None:
        """Stop serving ``model`` (its engine must be unloaded already)."""
        self.models = [m for m in self.models if m is not model]

    def names(self) -> list[str]:
        return [n for m in self.models for n in m.names]

    def find(self, name: str) -> ServedModel | None:
        """The model serving ``name``; Ollama's ``name:latest`` is ``name`` too, either way."""
        untagged = ":" not in name.rsplit("/", 1)[-1]
        tagged = f"{name}:latest" if untagged else name
        for want in dict.fromkeys((name, name.removesuffix(":latest"), tagged)):
            for m in self.models:
                if want in m.names:
                    return m
        return None

    def get(self, name: str) -> ServedModel:
        found = self.find(name)
        if found is None and self.fallback is not None and name:
            found = self.fallback(name)
        if found is None:
            raise ModelNotFoundError(name, self.names())
        return found

    async def _make_room(self, model: ServedModel) -> None:
        if not self.max_loaded:
            return
        while True:
            loaded = [m for m in self.models if m.loaded and m is not model]
            if len(loaded) < self.max_loaded:
                return
            idle = [m for m in loaded if m.active == 0]
            if not idle:
                raise ServerBusyError(
                    f"{len(loaded)} models are loaded and busy (--max-loaded-models "
                    f"{self.max_loaded}); {model.name} loads when one of them is idle.",
                    retry_after=5,
                )
            victim = min(idle, key=lambda m: m.last_used)
            log.info("unloading %s to make room for %s", victim.name, model.name)
            await victim.unload()

    async def start(self) -> None:
        """Load the models served with ``load: startup``, one after another (two
        loads at once would need both models' memory at the peak)."""
        for m in self.models:
            if m.preload:
                await m.ensure_loaded()

    async def close(self) -> None:
        await asyncio.gather(*(m.unload(force=True) for m in self.models))

    def finish_all(self) -> int:
        """End every running generation with its final chunk (server shutdown)."""
        return sum(m.engine.finish_all() for m in self.models)
