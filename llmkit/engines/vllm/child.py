"""A server llmkit runs as a child process (vLLM): started in its own process
group, its output forwarded to our log line by line, its last error kept for
when it dies, stopped with SIGTERM and then SIGKILL.

After ollama's ``llm/server.go`` (``LlamaServer``: Load, Ping, WaitUntilRunning,
Close, Pid, HasExited) and ``llm/status.go`` (``StatusWriter.LastError``).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

import httpx

from llmkit.errors import EngineError

# Lines worth reporting when the child dies: Python's exception lines, CUDA's.
_ERROR = re.compile(r"(Error|Exception|error:|CUDA|out of memory|No module named)")


class Child:
    def __init__(self, argv: list[str], env: Mapping[str, str], *, name: str) -> None:
        self.argv = argv
        self.env = dict(env)
        self.name = name
        self.log = logging.getLogger(f"llmkit.{name}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=50)
        self._last_error = ""
        self._pump: threading.Thread | None = None

    def spawn(self) -> None:
        self.tail.clear()
        self._last_error = ""
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() reaches its workers too
                preexec_fn=_die_with_parent(),
            )
        except OSError as e:
            raise EngineError(f"Could not start {self.name} ({self.argv[0]}): {e}") from e
        self._pump = threading.Thread(
            target=self._forward, args=(self.proc,), name=f"{self.name}-log", daemon=True
        )
        self._pump.start()

    def _forward(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            self.tail.append(line)
            if _ERROR.search(line):
                self._last_error = line
            self.log.info("%s", line)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def last_error(self) -> str:
        """The last line that looked like an error, else the last line at all."""
        return self._last_error or (self.tail[-1] if self.tail else "no output")

    async def final_error(self) -> str:
        """``last_error`` once the child's last lines are read (after it exited)."""
        if self._pump is not None:
            await asyncio.to_thread(self._pump.join, 2.0)
        return self.last_error()

    async def wait_healthy(
        self,
        url: str,
        *,
        timeout: float,
        progress: Callable[[float], None],
        every: float = 10.0,
    ) -> None:
        """Poll ``url`` until it answers 200; ``progress(seconds)`` now and every ``every``."""
        start = time.monotonic()
        next_note = start
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                now = time.monotonic()
                if now >= next_note:
                    progress(now - start)
                    next_note += every
                if self.exited():
                    raise EngineError(
                        f"{self.name} exited with code {self.returncode} before it was ready: "
                        f"{await self.final_error()}"
                    )
                if now - start > timeout:
                    await self.stop()
                    raise EngineError(
                        f"{self.name} was not ready after {timeout:.0f}s; its last line: "
                        f"{self.last_error()}"
                    )
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)

    async def wait_exit(self) -> int:
        proc = self.proc
        if proc is None:
            return 0
        while proc.poll() is None:
            await asyncio.sleep(0.1)
        return proc.returncode

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the whole group, SIGKILL after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            self.log.warning("%s did not stop in %.0fs; killing it", self.name, grace)
            self._signal(proc, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass


def _die_with_parent():  # type: ignore[no-untyped-def]
    """On Linux, have the kernel send the child SIGTERM if llmkit dies without
    stopping it (kill -9, a crash), so no vLLM is left holding the GPUs. Called
    from the thread that runs the event loop, which lives as long as the server
    (the signal follows the death of the thread that started the child)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not after fork
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return set_pdeathsig
