"""``llmkit create``: a safetensors model directory (or a catalog model pulled as one,
or a GGUF to quantize) becomes a GGUF model in the catalog, converted by llama.cpp's
converter and quantized by its quantizer (``llmkit.models.convert``), with the
progress of ``create_view``."""

from __future__ import annotations

from pathlib import Path

import click

from llmkit.cli.create_view import run_create
from llmkit.cli.models import _settings
from llmkit.env import ModelsSettings
from llmkit.errors import ModelSpecError
from llmkit.models.foreign import machine_catalog
from llmkit.models.quantize import QUANT_TYPES
from llmkit.models.sizing import format_bytes


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
