"""The vLLM engine: llmkit starts vLLM's own OpenAI server as a supervised child
process and fronts it, so a vLLM model also gets the Ollama API, /tokenize, the
chat client and its memory, like every other engine.

``build_argv`` turns our settings into vLLM's flags (a pure function: what runs
is exactly what it returns, and the log says so). The engine waits for vLLM's
/health with a progress line, forwards its log, restarts it when it dies (a few
times, then reports its last error), and stops it with the server. Requests go
to it through the upstream engine, in the OpenAI dialect.

Several GPUs are vLLM's business: ``--tensor-parallel-size`` splits each layer,
``--pipeline-parallel-size`` splits the layers into stages, and across nodes
``--distributed-executor-backend ray`` uses a Ray cluster started beforehand.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import logging
import shlex
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import httpx

from llmkit.core.types import Chunk, EngineInfo, GenerateRequest
from llmkit.engines.base import Engine
from llmkit.engines.remote import RemoteEngine
from llmkit.engines.vllm.child import Child
from llmkit.errors import ConfigError, EngineError, ServerBusyError

if TYPE_CHECKING:  # the spec builds this engine: at run time, only it imports the other
    from llmkit.engines.vllm.spec import VllmOptions

log = logging.getLogger("llmkit.engine.vllm")
VLLM_MODULE = "vllm.entrypoints.openai.api_server"
INSTALL_HINT = (
    "The vLLM engine needs vLLM, which is not installed here: `pip install vllm` "
    "(Linux with an NVIDIA GPU and CUDA; see https://docs.vllm.ai). Or point "
    "--vllm-command at a vLLM installed elsewhere."
)


def vllm_command(opts: VllmOptions) -> list[str]:
    """The command that starts vLLM's server, checked to exist."""
    if opts.vllm_command:
        cmd = shlex.split(opts.vllm_command)
        if not cmd or not shutil.which(cmd[0]):
            raise ConfigError(f"--vllm-command: cannot run '{opts.vllm_command}'.")
        return cmd
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(INSTALL_HINT)
    return [sys.executable, "-m", VLLM_MODULE]


def build_argv(
    opts: VllmOptions, command: list[str], *, model: str, served_name: str, port: int
) -> list[str]:
    """vLLM's command line for our settings; what vLLM decides by default is left out."""
    argv = [*command, "--model", model, "--served-model-name", served_name]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    flags: list[tuple[str, object]] = [
        ("--max-model-len", opts.max_model_len),
        ("--dtype", None if opts.dtype == "auto" else opts.dtype),
        ("--tensor-parallel-size", opts.tensor_parallel_size),
        ("--pipeline-parallel-size", opts.pipeline_parallel_size),
        ("--gpu-memory-utilization", opts.gpu_memory_utilization),
        ("--distributed-executor-backend", opts.distributed_executor_backend),
    ]
    for flag, value in flags:
        if value is not None:
            argv += [flag, str(value)]
    if opts.enforce_eager:
        argv.append("--enforce-eager")
    return argv + list(opts.vllm_arg)


def child_env(opts: VllmOptions, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    if opts.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = opts.cuda_visible_devices
    env.setdefault("PYTHONUNBUFFERED", "1")  # its log lines as they happen
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmEngine(Engine):
    supports_tools = True  # passed to vLLM, whose calls come back through RemoteEngine
    supports_logprobs = True  # likewise: vLLM computes them

    def __init__(
        self,
        opts: VllmOptions,
        *,
        command: list[str],
        model: str,
        served_name: str,
        env: Mapping[str, str],
    ) -> None:
        self.opts = opts
        self.command = command
        self.model = model
        self.served_name = served_name
        self.base_env = dict(env)
        self.argv: list[str] = []  # the exact command line of the running vLLM
        self._child: Child | None = None
        self._api: RemoteEngine | None = None
        self._watch: asyncio.Task[None] | None = None
        self._state = "stopped"  # starting, ready, restarting, failed, stopped
        self._problem = ""

    async def start(self) -> None:
        self._state = "starting"
        await self._launch()
        self._watch = asyncio.create_task(self._supervise())
        self._watch.add_done_callback(self._supervisor_ended)

    async def _launch(self) -> None:
        port = free_port()
        self.argv = build_argv(
            self.opts, self.command, model=self.model, served_name=self.served_name, port=port
        )
        log.info("starting vLLM: %s", shlex.join(self.argv))
        self._child = Child(self.argv, child_env(self.opts, self.base_env), name="vllm")
        self._child.spawn()
        url = f"http://127.0.0.1:{port}"

        def progress(seconds: float) -> None:
            log.info(
                "waiting for vLLM (pid %s) to load %s at %s: %.0fs",
                self._child.pid if self._child else "?",
                self.model,
                url,
                seconds,
            )

        await self._child.wait_healthy(
            url + "/health", timeout=self.opts.startup_timeout, progress=progress
        )
        if self._api is not None:
            await self._api.close()
        self._api = RemoteEngine(
            url,
            model=self.served_name,
            dialect="openai",
            engine_name="vllm",
            silence=self.opts.upstream_timeout,
        )
        await self._api.start()
        self._state = "ready"
        log.info("vLLM is ready at %s (pid %s)", url, self._child.pid)

    async def _supervise(self) -> None:
        """Restart vLLM when it dies or stops answering, with a growing pause between
        quick failures, at most ``max_restarts`` times within ``restart_window``: a
        crash a week after the last one is not counted against it."""
        restarts: collections.deque[float] = collections.deque()
        pause = 0.5  # doubled before each quick restart: 1 s, 2 s, ... 30 s
        while True:
            assert self._child is not None
            up_since = time.monotonic()
            self._problem = ""
            code = await self._until_gone(self._child)
            if not self._problem.startswith("vLLM stopped answering"):
                self._problem = f"vLLM exited with code {code}: {await self._child.final_error()}"
            log.error("%s", self._problem)
            now = time.monotonic()
            while restarts and now - restarts[0] > self.opts.restart_window:
                restarts.popleft()
            if len(restarts) >= self.opts.max_restarts:
                self._state = "failed"
                log.error(
                    "vLLM failed %d times within %gs; not restarting it again",
                    len(restarts) + 1,
                    self.opts.restart_window,
                )
                return
            restarts.append(now)
            self._state = "restarting"
            pause = 1.0 if now - up_since > 60 else min(pause * 2, 30.0)  # back off a crash loop
            log.info(
                "restarting vLLM in %gs (%d of %d within %gs)",
                pause,
                len(restarts),
                self.opts.max_restarts,
                self.opts.restart_window,
            )
            await asyncio.sleep(pause)
            try:
                await self._launch()
            except EngineError as e:
                self._problem = e.message
                self._state = "failed"
                log.error("vLLM could not be restarted: %s", e.message)
                return

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        # A supervisor that died of a bug must not leave the engine "ready" and
        # unwatched: say so, and let requests get the reason.
        if not task.cancelled() and task.exception() is not None:
            self._problem = f"the vLLM supervisor failed: {task.exception()!r}"
            self._state = "failed"
            log.error("%s", self._problem, exc_info=task.exception())

    async def _until_gone(self, child: Child) -> int:
        """Until ``child`` exits; one alive but deaf to three /health probes in a row
        is killed (so the restart takes over), with the reason kept."""
        exited = asyncio.ensure_future(child.wait_exit())
        missed = 0
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=self.opts.health_interval)
                if done:
                    return exited.result()
                missed = 0 if await self._answers() else missed + 1
                if missed >= 3:
                    self._problem = (
                        f"vLLM stopped answering /health ({missed} probes in a row, "
                        f"{self.opts.health_interval:g}s apart); killing it"
                    )
                    self._state = "restarting"
                    log.error("%s", self._problem)
                    await child.stop(grace=5.0)
                    return await exited
        finally:
            exited.cancel()

    async def _answers(self) -> bool:
        api = self._api
        if api is None:
            return True
        # A probe unanswered by the time the next one is due is missed (never
        # waited on past 5 s): probes don't pile up, and a shorter interval
        # notices a hung vLLM sooner.
        try:
            async with httpx.AsyncClient(timeout=min(self.opts.health_interval, 5.0)) as http:
                return (await http.get(api.url + "/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._child is not None:
            log.info("stopping vLLM (pid %s)", self._child.pid)
            await self._child.stop()
            self._child = None
        self._state = "stopped"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def _server(self) -> RemoteEngine:
        child = self._child
        if child is not None and child.exited() and self._state == "ready":
            # Dead, and the supervisor has yet to notice: do not send it requests.
            raise ServerBusyError(
                f"vLLM is restarting (vLLM exited with code {child.returncode}: "
                f"{child.last_error()}); retry shortly."
            )
        if self._state == "ready" and self._api is not None:
            return self._api
        if self._state in ("restarting", "starting"):
            raise ServerBusyError(f"vLLM is restarting ({self._problem}); retry shortly.")
        raise EngineError(self._problem or "The vLLM engine is not running.")

    async def health(self) -> bool:
        return self._state == "ready" and self._child is not None and not self._child.exited()

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        async for chunk in self._server().generate(req):
            yield chunk

    async def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return await self._server().tokenize(text, special=special)

    async def detokenize(self, ids: list[int]) -> str:
        return await self._server().detokenize(ids)

    async def encode(self, req: GenerateRequest) -> list[int] | None:
        return await self._server().encode(req)

    def finish_all(self) -> int:
        return self._api.finish_all() if self._api else 0

    def load(self) -> tuple[int, int]:
        return self._api.load() if self._api else (0, 0)

    @property
    def info(self) -> EngineInfo:
        ctx = self._api.info.context_length if self._api else (self.opts.max_model_len or 0)
        details: dict[str, str | int] = {"pid": self.pid or 0}
        for key in ("tensor_parallel_size", "pipeline_parallel_size", "dtype"):
            value = getattr(self.opts, key)
            if value not in (None, "auto"):
                details[key] = value
        return EngineInfo(engine="vllm", model=self.model, context_length=ctx, details=details)
