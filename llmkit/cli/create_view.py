"""The progress of making a model (``llmkit create``, and ``llmkit pull --quantize``
after its download): a rich bar per stage on a terminal, a line per stage otherwise;
llmkit errors and Ctrl-C become one line. And the check ``pull --quantize`` makes
before fetching any weight."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from llmkit.env import ModelsSettings
from llmkit.errors import LlmkitError
from llmkit.models.catalog import Catalog, CatalogEntry
from llmkit.models.convert import CreateEvent, check_before_pull, make_model
from llmkit.models.download import fetch_config
from llmkit.models.metadata import read_facts
from llmkit.models.sizing import DTYPE_BYTES


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


def room_to_convert(repo: str, settings: ModelsSettings, qtype: str) -> None:
    """Refuse ``pull --quantize`` that cannot fit, from the repository's config.json."""
    with tempfile.TemporaryDirectory(prefix="llmkit-config-") as tmp:
        facts = read_facts(fetch_config(repo, settings, Path(tmp)))
    if not facts.n_params:
        return  # nothing to judge by: the conversion checks again once the files are here
    download = facts.n_params * DTYPE_BYTES.get(facts.dtype or "bfloat16", 2)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    check_before_pull(
        settings.models_dir, facts.n_params, int(download), qtype, memory_gib=settings.memory_gib
    )
