"""Run ``llmkit serve``: build the engines, log what is served where, run uvicorn,
and stop cleanly.

On Ctrl-C or SIGTERM every running generation is ended with its final chunk
(finish_reason "length"), so streaming clients see a proper last event and
``[DONE]`` rather than a cut connection; then uvicorn drains and exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn
from sse_starlette.sse import AppStatus

from llmkit.api.app import create_app
from llmkit.engines.llamacpp.engine import LlamaCppEngine
from llmkit.engines.llamacpp.model import LoadOptions
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.models.bundled import BUNDLED_NAME, bundled_model_path
from llmkit.settings import ServeSettings, data_dir

log = logging.getLogger("llmkit")


def build_registry(settings: ServeSettings, on_progress=None) -> ModelRegistry:  # type: ignore[no-untyped-def]
    path = settings.model or bundled_model_path()
    default_name = BUNDLED_NAME if settings.model is None else Path(path).stem
    engine = LlamaCppEngine(
        LoadOptions(
            path=path,
            n_ctx=settings.max_model_len,
            n_threads=settings.threads,
            parallel=settings.parallel,
            on_progress=on_progress,
        ),
        max_queue=settings.max_queue,
    )
    created = int(os.path.getmtime(path)) if os.path.exists(path) else 0
    registry = ModelRegistry()
    registry.add(
        ServedModel(
            names=settings.served_model_name or [default_name], engine=engine, created=created
        )
    )
    return registry


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, registry: ModelRegistry) -> None:
        super().__init__(config)
        self.registry = registry

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
        if not self.should_exit:
            n = self.registry.finish_all()
            log.info("stopping: ending %d running generation(s)", n)
        super().handle_exit(sig, frame)


def startup_lines(settings: ServeSettings, registry: ModelRegistry) -> list[str]:
    lines = []
    for m in registry.models:
        info = m.engine.info
        extra = ", ".join(f"{k} {v}" for k, v in info.details.items())
        lines.append(
            f"serving {m.name}"
            + (f" (also as {', '.join(m.names[1:])})" if len(m.names) > 1 else "")
            + f" on {info.engine}: {info.model}; context {info.context_length} tokens"
            + (f", {extra}" if extra else "")
        )
    auth = "API key required" if settings.api_key else "no API key"
    lines.append(
        f"OpenAI API at {settings.base_url}/v1 ({auth}); health at {settings.base_url}/health"
    )
    return lines


def state_file() -> Path:
    return data_dir() / "server.json"


def _record(settings: ServeSettings, registry: ModelRegistry) -> None:
    """Let clients in other terminals find this server without any variable."""
    try:
        path = state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"url": settings.base_url, "pid": os.getpid(), "models": registry.names()})
        )
    except OSError as e:
        log.warning("could not record the server address: %s", e)


def _forget() -> None:
    try:
        path = state_file()
        if path.exists() and json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def serve(settings: ServeSettings, on_progress=None) -> None:  # type: ignore[no-untyped-def]
    registry = build_registry(settings, on_progress)

    def announce() -> None:
        for line in startup_lines(settings, registry):
            log.info(line)
        _record(settings, registry)

    app = create_app(settings, registry, on_ready=announce)

    # We end streams ourselves, each with its final event; sse-starlette must not cut them.
    AppStatus.disable_automatic_graceful_drain()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    try:
        _Server(config, registry).run()
    finally:
        _forget()
