"""Run one long child process (llama.cpp's converter, the quantizer) and report its
progress by watching the file it writes grow towards the size it will have.

Both tools write their output front to back (header, then tensor after tensor), so
the bytes on disk are an honest measure of the work done, whatever each tool prints.
The child is killed when the caller stops waiting (an error, Ctrl-C, ``cancelled``),
so nothing keeps writing into a file that is about to be removed. The child's peak
RSS (its VmHWM, read as it runs) comes back for the benchmark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmkit.errors import LlmkitError

#: How often the output's size (and the child's peak RSS) is looked at.
POLL_S = 0.05


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss: int  # bytes, of the child, as last read before it exited


class ChildFailed(LlmkitError):
    """The child exited non-zero; the message ends with the last lines it printed."""


def run_watched(
    cmd: list[str],
    output: Path,
    expected: int,
    on_bytes: Callable[[int, int], None],
    *,
    what: str,
    cancelled: Callable[[], bool] = lambda: False,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run ``cmd`` until it exits; ``on_bytes(written, expected)`` as ``output`` grows
    (``written`` stays under ``expected`` until the child is done)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        try:
            status, peak = _wait(proc, output, expected, on_bytes, cancelled)
        except BaseException:
            _kill(proc)
            raise
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-4000:]
            raise ChildFailed(f"{what} failed (exit {code}):\n{_last_lines(tail)}")
    on_bytes(expected, expected)
    return ChildRun(time.perf_counter() - started, peak)


def peak_rss(pid: int) -> int:
    """A live process's peak RSS so far (VmHWM), 0 when it cannot be read. Not
    ``wait4``'s ru_maxrss: Linux carries that over from the parent across fork and
    exec, so a child of a big process would report the parent's peak."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _wait(
    proc: subprocess.Popen,
    output: Path,
    expected: int,
    on_bytes: Callable[[int, int], None],
    cancelled: Callable[[], bool],
) -> tuple[int, int]:
    last = -1
    peak = 0
    while True:
        peak = max(peak, peak_rss(proc.pid))
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            return status, peak
        if cancelled():
            raise LlmkitError("cancelled")
        try:
            size = output.stat().st_size
        except OSError:
            size = 0
        if size != last:
            last = size
            on_bytes(min(size, int(expected * 0.99)), expected)
        time.sleep(POLL_S)


def _kill(proc: subprocess.Popen) -> None:
    if proc.returncode is not None:
        return
    try:
        proc.send_signal(signal.SIGKILL)
        os.waitpid(proc.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    proc.returncode = -signal.SIGKILL


def _last_lines(text: str, n: int = 8) -> str:
    """The lines that say why: progress bars (carriage returns) left out."""
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in text.splitlines()]
    return "\n".join([ln for ln in lines if ln][-n:])
