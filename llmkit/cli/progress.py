"""Progress shown while a model loads: a bar on a terminal, a few log lines otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

log = logging.getLogger("llmkit")


def load_progress() -> Callable[[float], None]:
    """A callback taking the fraction loaded (0..1)."""
    if sys.stderr.isatty():
        from rich.progress import Progress

        progress = Progress(transient=True)
        task = progress.add_task("loading model", total=1.0)
        started = False

        def on_tty(fraction: float) -> None:
            nonlocal started
            if not started:
                progress.start()
                started = True
            progress.update(task, completed=fraction)
            if fraction >= 1.0:
                progress.stop()

        return on_tty

    marks = [0.0, 0.5, 1.0]

    def on_log(fraction: float) -> None:
        while marks and fraction >= marks[0]:
            log.info("loading model: %d%%", int(marks.pop(0) * 100))

    return on_log
