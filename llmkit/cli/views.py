"""How the model commands look in a terminal: pull progress (rich bars on a
terminal, plain lines otherwise) and the worked arithmetic of ``llmkit mem``."""

from __future__ import annotations

import sys

import click

from llmkit.models.download import PullEvent
from llmkit.models.fit import Verdict
from llmkit.models.metadata import ModelFacts
from llmkit.models.sizing import format_bytes


def human_params(n: int | None) -> str:
    """134_515_008 -> '135M'; 7_615_616_512 -> '7.6B'; 70_553_706_496 -> '70.6B'."""
    if not n:
        return "?"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


class PullView:
    """Receives PullEvents; draws a bar per file and one overall on a terminal."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.done: set[str] = set()
        self.completed: dict[str, int] = {}
        self.progress = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                console=Console(stderr=True),
            )
            self.tasks: dict[str, int] = {}

    def __call__(self, e: PullEvent) -> None:
        if e.status == "trying":
            self._say(f"pulling {self.repo} from {e.source} ({e.message})")
        elif e.status == "failed":
            self._say(f"{e.source} failed: {e.message}")
        elif e.status == "fit" and e.report is not None and e.message:
            # Only when choosing: a check that passes is not worth a table.
            for line in e.report.lines():
                self._say(line)
            self._say(f"taking {e.message}, the largest quantisation that fits")
        elif e.status == "files":
            self.completed.clear()
            self.done.clear()
            n = len(e.files)
            self._say(f"{n} file{'s' if n != 1 else ''}, {format_bytes(e.total or 0)}")
            if self.progress is not None:
                self.progress.start()
                self.tasks = {"": self.progress.add_task("total", total=e.total or None)}
        elif e.status == "downloading" and e.file:
            self._progress(e)
        elif e.status == "success" and self.progress is not None:
            self.progress.stop()

    def _progress(self, e: PullEvent) -> None:
        assert e.file is not None
        if self.progress is not None:
            if e.file not in self.tasks:
                self.tasks[e.file] = self.progress.add_task(e.file, total=e.total)
            self.progress.update(self.tasks[e.file], completed=e.completed, total=e.total)
            self.completed[e.file] = e.completed
            self.progress.update(self.tasks[""], completed=sum(self.completed.values()))
        if e.total is not None and e.completed >= e.total and e.file not in self.done:
            self.done.add(e.file)
            if self.progress is None:
                click.echo(f"  done {e.file} ({format_bytes(e.total)})", err=True)

    def _say(self, text: str) -> None:
        if self.progress is not None and self.progress.live.is_started:
            self.progress.console.print(text)
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        if self.progress is not None and self.progress.live.is_started:
            self.progress.stop()


def mem_lines(name: str, facts: ModelFacts, v: Verdict) -> list[str]:
    """The estimate as users work it out: parameters x bytes, K and V x layers x
    heads x dims x bytes per token, x tokens, + overhead, per device."""
    e = v.estimate
    per_dev = f" / {e.tp} devices" if e.tp > 1 else ""
    how = "counted from the weights" if facts.params_counted else "estimated from config.json"
    stored = (
        f"{e.weight_format} as stored: {e.bytes_per_param * 8:.2f} bits each"
        if facts.format == "gguf" and e.weight_format == facts.weight_format
        else e.weight_format
    )
    heads = (
        f"{e.kv_heads_per_device} KV heads per device" if e.tp > 1 else f"{e.n_kv_heads} KV heads"
    )
    seqs = f"{e.sequences} sequence" + ("s" if e.sequences > 1 else "")
    rows = [
        ("weights", f"{e.n_params:,} parameters x {e.bytes_per_param:.3g} bytes ({stored})"
         f"{per_dev}", e.weights_per_device),
        ("KV cache", f"2 (K, V) x {e.n_layers} layers x {heads} x {e.head_dim} dims x "
         f"{e.kv_bytes_per_value:g} bytes", e.kv_bytes_per_token_per_device),
        ("", f"x {e.context} tokens x {seqs}" if e.kv_tokens == e.context * e.sequences
         else f"x a pool of {e.kv_tokens} tokens that {seqs} share", e.kv_per_device),
        ("overhead", e.overhead_covers, e.overhead_bytes),
        ("total", "per device" if e.tp > 1 else "", e.per_device_bytes),
    ]  # fmt: skip
    width = max(len(text) for _, text, _ in rows)
    lines = [
        f"{name}: {facts.architecture or 'unknown architecture'}, "
        f"{human_params(e.n_params)} parameters ({how})"
    ]
    for label, text, n in rows:
        unit = " per token" if label == "KV cache" else ""
        lines.append(f"  {label:<9}{text:<{width}}  = {format_bytes(n):>11}{unit}")
    verdict = "fits" if v.fits else "does not fit"
    sign = "<=" if v.fits else ">"
    lines.append(
        f"{verdict}: {format_bytes(e.per_device_bytes)} {sign} {format_bytes(v.budget.bytes)} "
        f"({v.budget.source})"
    )
    lines += [f"note: {n}" for n in v.notes]
    if v.suggestions:
        lines.append("to fit, try: " + "; or ".join(v.suggestions))
    return lines
