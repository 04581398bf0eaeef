"""Run ``llmkit serve``: build the engines, log what is served where, run uvicorn,
and stop cleanly.

On Ctrl-C or SIGTERM every running generation is ended with its final chunk
(finish_reason "length"), so streaming clients see a proper last event and
``[DONE]`` rather than a cut connection; then uvicorn drains and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import sqlalchemy as sa
import uvicorn
from sse_starlette.sse import AppStatus

from llmkit.api.app import create_app
from llmkit.config.settings import ServeSettings
from llmkit.engines.registry import ModelRegistry
from llmkit.engines.spec import EngineSpecs
from llmkit.env import Environment
from llmkit.errors import EngineError, LlmkitError
from llmkit.memory.database import store_url
from llmkit.serving.build import build_registry
from llmkit.serving.local_models import LocalModels, attach

log = logging.getLogger("llmkit")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, registry: ModelRegistry, grace: float = 0.0) -> None:
        super().__init__(config)
        self.registry = registry
        self.grace = grace  # how long running generations may go on after a stop signal
        self.startup_error: LlmkitError | None = None
        self._deadline: threading.Timer | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Load the models before uvicorn's own start-up, so a model that cannot load
        # ends the server with its reason (not a traceback), and Ctrl-C during a long
        # load (vLLM takes minutes) stops it at once.
        task = asyncio.ensure_future(self.registry.start())
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            if self.should_exit and not task.done():
                task.cancel()
        try:
            task.result()
        except (LlmkitError, asyncio.CancelledError) as e:
            if isinstance(e, LlmkitError):
                self.startup_error = e
            await self.registry.close()
            self.should_exit = True
            return
        await super().startup(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after its graceful shutdown, so the process
        # dies "killed by SIGTERM"; a stop we handled cleanly should exit 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        sigs = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # The first signal stops accepting and gives running generations the grace
        # period; then (or at a second signal) each ends with its final event.
        if self.should_exit:
            self._end_generations("stop signal again")
            return  # no force_exit: the ended streams still get their last event out
        running = sum(sum(m.engine.load()) for m in self.registry.models)
        if self.grace > 0 and running:
            log.info(
                "stopping: letting %d generation(s) finish, for at most %gs "
                "(--shutdown-timeout; a second Ctrl-C ends them now)",
                running,
                self.grace,
            )
            self._deadline = threading.Timer(self.grace, self._end_generations, ("grace over",))
            self._deadline.daemon = True
            self._deadline.start()
        else:
            self._end_generations("stopping")
        super().handle_exit(sig, frame)

    def _end_generations(self, why: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        n = self.registry.finish_all()
        if n:
            log.info("%s: ending %d running generation(s)", why, n)


def startup_lines(
    settings: ServeSettings, registry: ModelRegistry, local: LocalModels | None
) -> list[str]:
    lines = []
    for m in registry.models:
        info = m.info
        extra = ", ".join(f"{k} {v}" for k, v in info.details.items())
        also = f" (also as {', '.join(m.names[1:])})" if len(m.names) > 1 else ""
        if not m.loaded:
            lines.append(f"serving {m.name}{also} on {info.engine}: {info.model}; loads when used")
            continue
        lines.append(
            f"serving {m.name}{also} on {info.engine}: {info.model}; context "
            f"{info.context_length} tokens" + (f", {extra}" if extra else "")
        )
    if local is not None:
        n = len(local.listed())
        lines.append(
            f"serving the local catalog on demand ({local.models.models_dir}): {n} more "
            f"model(s) now; pull, copy, create and delete over the Ollama API"
        )
    keys = settings.api_keys()
    auth = f"{len(keys)} API key(s) required" if keys else "no API key"
    url = settings.base_url
    lines.append(
        f"OpenAI API at {url}/v1, Ollama API at {url}/api ({auth}); health at {url}/health"
    )
    if settings.store:
        shown = sa.make_url(settings.store).render_as_string(hide_password=True)
        age = f", none older than {settings.responses_max_age}" * bool(settings.responses_max_age)
        lines.append(
            f"stored responses (/v1/responses) kept in {shown}: at most "
            f"{settings.responses_max_count}{age}"
        )
    return lines


def with_store(settings: ServeSettings, env: Environment) -> ServeSettings:
    """``settings`` with the store every command shares when ``--store`` names none."""
    if settings.store:
        return settings
    return settings.model_copy(update={"store": store_url(env)})


def _record(settings: ServeSettings, registry: ModelRegistry, env: Environment) -> None:
    """Let clients in other terminals find this server without any variable."""
    try:
        path = env.server_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"url": settings.base_url, "pid": os.getpid(), "models": registry.names()})
        )
    except OSError as e:
        log.warning("could not record the server address: %s", e)


def _forget(env: Environment) -> None:
    try:
        path = env.server_file
        if path.exists() and json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _models(
    settings: ServeSettings,
    specs: EngineSpecs,
    env: Environment,
    on_progress: Callable[[float], None] | None,
) -> tuple[ModelRegistry, LocalModels | None]:
    """The configured models, and the local catalog served on demand beside them."""
    registry = build_registry(settings, specs, env, on_progress)
    return registry, attach(settings, specs, env, registry)


def serve(
    settings: ServeSettings,
    specs: EngineSpecs,
    env: Environment,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    settings.check_exposure()  # before anything loads: a refusal must come at once
    settings = with_store(settings, env)
    registry, local = _models(settings, specs, env, on_progress)

    def announce() -> None:
        for line in startup_lines(settings, registry, local):
            log.info(line)
        _record(settings, registry, env)

    app = create_app(settings, registry, on_ready=announce, local_models=local)
    if settings.log_requests:
        logging.getLogger("llmkit.requests").setLevel(logging.INFO)

    # We end streams ourselves, each with its final event; sse-starlette must not cut them.
    AppStatus.disable_automatic_graceful_drain()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        # Past the grace, generations end at once; then their last events need a moment.
        timeout_graceful_shutdown=int(settings.shutdown_timeout) + 10,
    )
    server = _Server(config, registry, grace=settings.shutdown_timeout)
    try:
        server.run()
    finally:
        _forget(env)
    if server.startup_error is not None:
        raise server.startup_error


@contextlib.contextmanager
def serving_in_thread(
    settings: ServeSettings,
    specs: EngineSpecs,
    env: Environment,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[str]:
    """Serve on loopback from a background thread (``llmkit run``); yields the URL.

    ``settings.port`` 0 picks a free port. The server is not recorded as this
    machine's server: it lives only as long as the chat that started it.
    """
    if settings.port == 0:
        with socket.socket() as s:
            s.bind((settings.client_host, 0))
            settings = settings.model_copy(update={"port": s.getsockname()[1]})
    settings = with_store(settings, env)
    registry, local = _models(settings, specs, env, on_progress)
    app = create_app(settings, registry, local_models=local)
    AppStatus.disable_automatic_graceful_drain()
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, log_level="warning"
    )
    server = _Server(config, registry)
    thread = threading.Thread(target=server.run, name="llmkit-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            if server.startup_error is not None:
                raise server.startup_error
            what = ", ".join(settings.model) or "the bundled model"
            raise EngineError(f"The model could not be served: {what}")
        time.sleep(0.05)
    try:
        yield settings.base_url
    finally:
        registry.finish_all()
        server.should_exit = True
        thread.join(timeout=30)
