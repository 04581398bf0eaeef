"""The progress of making a model (``llmkit create``, and ``llmkit pull --quantize``
after its download): a rich bar per stage on a terminal, a line per stage otherwise;
llmkit errors and Ctrl-C become one line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llmkit.env import ModelsSettings
from llmkit.errors import LlmkitError
from llmkit.models.catalog import Catalog, CatalogEntry
from llmkit.models.convert import CreateEvent, make_model


class CreateView:
    """Receives CreateEvents: a rich bar per stage on a terminal, else one line each."""

    def __init__(self) -> None:
        self.stage = ""
        self.progress = None
        self.task = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                console=Console(stderr=True),
            )

    def __call__(self, e: CreateEvent) -> None:
        if e.stage != self.stage:
            self.stage = e.stage
            if self.progress is not None and e.stage in ("converting", "quantizing"):
                self.progress.start()
                self.task = self.progress.add_task(e.message, total=e.total or None)
            elif e.stage in ("converting", "quantizing", "writing"):
                click.echo(e.message or "writing the model", err=True)
        if self.progress is not None and self.task is not None and e.total:
            self.progress.update(self.task, completed=e.completed, total=e.total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_create(
    settings: ModelsSettings,
    name: str,
    source: Path,
    quantize: str | None,
    imatrix: Path | None,
    force: bool,
) -> CatalogEntry:
    """Make the model, with progress; llmkit errors and Ctrl-C become one line."""
    catalog = Catalog(settings.models_dir)
    view = CreateView()
    try:
        entry, _ = make_model(
            catalog, name, source, quantize, view, imatrix=imatrix,
            check_fit=not force, memory_gib=settings.memory_gib,
        )  # fmt: skip
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; nothing was added to the catalog.") from None
    finally:
        view.close()
    return entry
