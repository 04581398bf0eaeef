"""``llmkit create``: a safetensors model directory (or a catalog model pulled as one,
or a GGUF to quantize) becomes a GGUF model in the catalog, converted by llama.cpp's
converter and quantized by its quantizer (``llmkit.models.convert``); and the
conversion step ``llmkit pull --quantize`` runs after its download. A bar per stage
on a terminal, a line per stage otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llmkit.cli.models import _settings
from llmkit.env import ModelsSettings
from llmkit.errors import LlmkitError, ModelSpecError
from llmkit.models.catalog import Catalog, CatalogEntry
from llmkit.models.convert import CreateEvent, make_model
from llmkit.models.foreign import machine_catalog
from llmkit.models.quantize import QUANT_TYPES
from llmkit.models.sizing import format_bytes


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


def _source(spec: str, settings: ModelsSettings) -> Path:
    """A directory or .gguf path as given, else a catalog model's files."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    try:
        entry = machine_catalog(settings).find(spec)
    except ModelSpecError as e:
        raise click.BadParameter(f"no such directory or file, and {e.message}") from None
    if not entry.complete:
        raise click.BadParameter(f"{entry.name} is not completely pulled; pull it again first.")
    return entry.path


@click.command()
@click.argument("name")
@click.option(
    "--from",
    "from_",
    required=True,
    help="A safetensors model directory, a catalog model pulled as safetensors, or a GGUF.",
)
@click.option(
    "--quantize",
    "-q",
    help=f"Quantization type, any case: {', '.join(QUANT_TYPES)}. [default: F16]",
)
@click.option(
    "--imatrix",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="An importance matrix from llama-imatrix (GGUF or legacy .dat) to guide quantization.",
)
@click.option("--force", is_flag=True, help="Skip the disk and memory check.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where pulled models are kept. [env: LLMKIT_MODELS; default: <data dir>/models]",
)
def create(
    name: str,
    from_: str,
    quantize: str | None,
    imatrix: Path | None,
    force: bool,
    cache_dir: Path | None,
) -> None:
    """Make a GGUF model from safetensors with llama.cpp's converter and quantizer.

    The disk (the f16 GGUF and the quantized one) and the memory the work needs
    are checked first; an error or Ctrl-C leaves nothing in the catalog.

    \b
    llmkit create my-model --from ./my-finetune --quantize q4_K_M
    llmkit create qwen-q8 --from Qwen/Qwen2.5-0.5B-Instruct --quantize q8_0
    llmkit create smol-q4 --from ./smol-f16.gguf --quantize q4_0
    """
    settings = _settings(cache_dir)
    entry = run_create(settings, name, _source(from_, settings), quantize, imatrix, force)
    click.echo(f"created {entry.name} ({format_bytes(entry.size_on_disk())}) at {entry.path}")
