"""The model commands: ``pull`` (fetch from a hub), ``list``, ``show`` and ``rm``
(the local catalog) and ``mem`` (will it fit). Each parses its flags into
``ModelsSettings`` and calls ``llmkit.models``; llmkit errors become one-line
``click`` errors here, at the edge."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from llmkit.cli.create_view import room_to_convert, run_create
from llmkit.cli.views import PullView, human_params, mem_lines
from llmkit.env import SOURCES, Environment, ModelsSettings
from llmkit.errors import LlmkitError, ModelSpecError
from llmkit.models.catalog import CatalogEntry
from llmkit.models.download import SHORT_NAMES, PullRequest, fetch_config, size_remote, tag_target
from llmkit.models.download import pull as pull_model
from llmkit.models.fit import MEM_FLAGS, Budget, Plan, judge, machine_budget
from llmkit.models.foreign import machine_catalog
from llmkit.models.metadata import ModelFacts, read_facts
from llmkit.models.quantize import quant_type
from llmkit.models.quiet import quiet_libraries
from llmkit.models.remote_fit import FitPolicy, FitReport
from llmkit.models.resolve import locate, looks_like_path, model_projector, resolve_model
from llmkit.models.sizing import DTYPE_BYTES, GIB, format_bytes

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where pulled models are kept. [env: LLMKIT_MODELS; default: <data dir>/models]",
)
#: What ``pull --quantize`` fetches of a repository: what the converter reads.
SAFETENSORS_FILES = ("*.safetensors", "*.json", "*.jinja", "tokenizer.model", "*.tiktoken", "*.txt")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
gpu_memory_option = click.option(
    "--gpu-memory",
    type=click.FloatRange(min=0, min_open=True),
    help="GiB per device to fit in. [env: LLMKIT_MEMORY_GIB; default: this machine's GPU "
    "memory (for a GGUF: RAM)]",
)


def _budget(gpu_memory: float | None, settings: ModelsSettings, *, gguf: bool) -> Budget:
    if gpu_memory is not None:
        return Budget(int(gpu_memory * GIB), f"--gpu-memory {gpu_memory:g}")
    return machine_budget(gpu=not gguf, memory_gib=settings.memory_gib)


def _settings(cache_dir: Path | None) -> ModelsSettings:
    try:
        env = Environment.read()
        return env.models(**({"models_dir": cache_dir} if cache_dir else {}))
    except ValidationError as e:
        raise click.UsageError(str(e.errors()[0]["msg"]).removeprefix("Value error, ")) from None


@click.command()
@click.argument("repo")
@click.option(
    "--source",
    help="hf, hf-mirror or modelscope; a comma-separated list is tried in order. "
    "[env: LLMKIT_SOURCES; default: hf,hf-mirror,modelscope]",
)
@click.option("--revision", help="Branch, tag or commit. [default: the source's main branch]")
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable).")
@click.option(
    "--fit",
    "choose",
    is_flag=True,
    help="Take the largest GGUF quantisation that fits this machine's memory.",
)
@click.option(
    "--force", is_flag=True, help="Pull even what does not fit (no fit check before fetching)."
)
@click.option(
    "--max-model-len",
    type=click.IntRange(min=1),
    help="Context to judge the fit at. [default: the model's own, at most 8192]",
)
@click.option(
    "--quantize",
    "-q",
    help="For a safetensors repository: convert it with llama.cpp and quantize it to "
    "this type (q4_K_M, q8_0, f16, ...), as the model REPO:TYPE.",
)
@gpu_memory_option
@cache_dir_option
def pull(
    repo: str,
    source: str | None,
    revision: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    choose: bool,
    force: bool,
    max_model_len: int | None,
    quantize: str | None,
    gpu_memory: float | None,
    cache_dir: Path | None,
) -> None:
    """Download a model from Hugging Face, a mirror of it, or ModelScope.

    Before any file is fetched, the GGUF headers (ranged reads of a few MB)
    say whether the model fits this machine; one that cannot is refused.

    \b
    llmkit pull qwen2.5:0.5b
    llmkit pull Qwen/Qwen2.5-7B-Instruct-GGUF --fit
    llmkit pull Qwen/Qwen2-0.5B-Instruct-GGUF --include '*q4_k_m.gguf'
    llmkit pull qwen2-7b-instruct --source modelscope
    HF_ENDPOINT=https://hf-mirror.com llmkit pull HuggingFaceTB/SmolLM2-135M-Instruct
    llmkit pull HuggingFaceTB/SmolLM2-360M-Instruct --quantize q4_K_M
    """
    settings = _settings(cache_dir)
    fit = None
    if quantize is not None:
        try:
            quantize = quant_type(quantize)
            if not force:  # before any weight moves: room for the download and the work
                with quiet_libraries():
                    room_to_convert(repo, settings, quantize)
        except LlmkitError as e:
            raise click.ClickException(e.message) from None
        # The weights, config and tokenizer only; the GGUF fit check is not for them.
        include = include or SAFETENSORS_FILES
    elif not force:
        # No --gpu-memory: the machine's, as the repository's kind says (GGUF: RAM).
        budget = _budget(gpu_memory, settings, gguf=True) if gpu_memory else None
        fit = FitPolicy(choose=choose, budget=budget, context=max_model_len)
    sources = tuple(s.strip() for s in (source or "").split(",") if s.strip())
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise click.BadParameter(f"use {', '.join(SOURCES)}", param_hint="--source")
    view = PullView(repo)
    req = PullRequest(repo, revision, include, exclude, sources)
    try:
        with quiet_libraries():
            entries = pull_model(req, settings, view, fit=fit)
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; `llmkit pull {repo}` again resumes.") from None
    finally:
        view.close()
    for entry in entries:
        click.echo(f"pulled {entry.name} ({format_bytes(entry.size_on_disk())}) into {entry.path}")
    if quantize is not None:
        pulled = entries[0]
        name = f"{pulled.name}:{quantize.lower()}"
        made = run_create(settings, name, pulled.path, quantize, None, force)
        click.echo(f"created {made.name} ({format_bytes(made.size_on_disk())}) at {made.path}")


def _facts(entry: CatalogEntry) -> ModelFacts | None:
    try:
        return read_facts(entry.path)
    except (LlmkitError, OSError):
        return None  # a half-pulled file: listed all the same, with what is known


def _row(entry: CatalogEntry, facts: ModelFacts | None) -> dict[str, Any]:
    return {
        "name": entry.name,
        "format": facts.format if facts else entry.format,
        "parameters": facts.n_params if facts else None,
        "quantization": facts.weight_format if facts else None,
        "size": entry.size_on_disk(),
        "context_length": facts.context_length if facts else None,
        "source": entry.source,
        "complete": entry.complete,
        "path": str(entry.path),
        # A vision model's projector, served with it (Ollama's "vision" capability).
        "projector": str(entry.projector) if entry.projector else None,
    }


@click.command(name="list")
@json_option
@cache_dir_option
def list_models(as_json: bool, cache_dir: Path | None) -> None:
    """List the models on this machine (the bundled one first)."""
    settings = _settings(cache_dir)
    catalog = machine_catalog(settings)
    rows = [_row(e, _facts(e)) for e in catalog.entries()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "FORMAT", "PARAMS", "QUANT/DTYPE", "SIZE", "CONTEXT", "SOURCE")]
    for r in rows:
        fmt = r["format"] + ("+vision" if r["projector"] else "")
        table.append((
            r["name"], fmt, human_params(r["parameters"]), r["quantization"] or "?",
            format_bytes(r["size"]), str(r["context_length"] or "?"),
            r["source"] + ("" if r["complete"] else " (incomplete)"),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _local_facts(spec: str, settings: ModelsSettings) -> tuple[str, Path, ModelFacts]:
    """(name, path, facts) of a catalog name or a local path; a directory holding
    exactly one GGUF and no config.json means that GGUF."""
    found = locate(spec, settings)
    path = found.path
    if path.is_dir() and not (path / "config.json").is_file():
        path = resolve_model(spec, settings).path
    return found.name, path, read_facts(path)


def _projector(spec: str, settings: ModelsSettings) -> Path | None:
    """The vision projector served with a GGUF model (``resolve.model_projector``)."""
    try:
        return model_projector(resolve_model(spec, settings))
    except LlmkitError:  # not a GGUF model: a safetensors one says so in its config
        return None


@click.command()
@click.argument("name")
@json_option
@cache_dir_option
def show(name: str, as_json: bool, cache_dir: Path | None) -> None:
    """Show a model's architecture, shape, context and chat template."""
    settings = _settings(cache_dir)
    try:
        label, path, facts = _local_facts(name, settings)
        entry = locate(name, settings).entry
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
    made = entry.modelfile if entry else None  # a made model's, or Ollama's manifest layers
    projector = _projector(name, settings)
    if as_json:
        out = {"name": label, "path": str(path), "facts": facts.to_json()}
        out["projector"] = str(projector) if projector else None
        click.echo(json.dumps({**out, "modelfile": made.to_manifest() if made else None}, indent=2))
        return
    n = facts.n_params
    rows = [
        ("name", label),
        ("path", str(path)),
        ("format", facts.format),
        ("architecture", facts.architecture),
        ("parameters", f"{n:,} ({human_params(n)})" if n else None),
        ("quantisation" if facts.quantization else "dtype", facts.weight_format),
        ("layers", facts.n_layers),
        ("hidden size", facts.hidden_size),
        ("heads", facts.n_heads),
        ("KV heads", facts.n_kv_heads),
        ("head dim", facts.head_dim),
        ("vocabulary", facts.vocab_size),
        ("context length", facts.context_length),
        ("chat template", "yes" if facts.chat_template else "no"),
        ("licence", facts.license or "unknown"),
    ]
    if projector is not None:  # what Ollama's capabilities call "vision"
        rows.append(("vision", f"yes (projector {projector})"))
    if made is not None:
        rows += [
            ("system", made.system.strip() if made.system else None),
            ("parameters", json.dumps(made.parameters) if made.parameters else None),
        ]
    for key, value in rows:
        click.echo(f"{key:<15}{'?' if value is None else value}")


@click.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@cache_dir_option
def rm(name: str, yes: bool, cache_dir: Path | None) -> None:
    """Remove a pulled model (or one GGUF of several: NAME:TAG)."""
    settings = _settings(cache_dir)
    catalog = machine_catalog(settings)
    try:
        entry = catalog.find(name)
        if entry.source == "bundled" or entry.directory is None:
            catalog.remove(entry)  # refuses (bundled, another tool's), with the reason
        size = format_bytes(entry.size_on_disk())
        if not yes and not click.confirm(f"Remove {entry.name} ({size})?", default=False):
            raise click.ClickException("nothing removed.")
        catalog.remove(entry)
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
    click.echo(f"removed {entry.name} ({size})")


def _remote_report(
    spec: str,
    settings: ModelsSettings,
    gpu_memory: float | None,
    context: int | None,
    batch: int,
    tp: int,
) -> FitReport | None:
    """The per-quantisation table of a GGUF repository not on this machine; None
    for anything local (or a repository that is no GGUF one)."""
    if tp != 1 or looks_like_path(spec):
        return None
    try:
        locate(spec, settings)
        return None
    except ModelSpecError:
        pass
    if "/" not in spec and tag_target(spec, settings) is None:
        return None
    budget = _budget(gpu_memory, settings, gguf=True)
    return size_remote(spec, settings, budget, context=context, sequences=batch)


def _print_report(report: FitReport, spec: str, as_json: bool) -> None:
    best = report.largest_fitting()
    if as_json:
        rows = [
            {"quantization": q.label, "files": [f.path for f in q.files], "size": q.size,
             "needs_bytes": q.estimate.per_device_bytes if q.estimate else None,
             "fits": q.fits, "note": q.why or None}
            for q in report.quants
        ]  # fmt: skip
        out = {"model": report.repo, "budget": asdict(report.budget), "context": report.context,
               "quantizations": rows, "largest_fitting": best.label if best else None,
               "header_bytes_read": report.bytes_read}  # fmt: skip
        click.echo(json.dumps(out, indent=2))
        return
    for line in report.lines():
        click.echo(line)
    if best is None:
        click.echo("none fits: try a smaller model, or a shorter --max-model-len")
    else:
        click.echo(f"largest that fits: {best.label} (`llmkit pull {spec} --fit` takes it)")


def _mem_facts(spec: str, settings: ModelsSettings) -> tuple[str, ModelFacts]:
    try:
        name, _, facts = _local_facts(spec, settings)
        return name, facts
    except ModelSpecError:
        repo_like = "/" in spec or spec.lower() in SHORT_NAMES
        if not repo_like or looks_like_path(spec):
            raise
    # A repository not pulled: its config.json is enough to size it.
    with tempfile.TemporaryDirectory(prefix="llmkit-config-") as tmp:
        return spec, read_facts(fetch_config(spec, settings, Path(tmp)))


@click.command()
@click.argument("model")
@click.option(
    "--dtype",
    type=click.Choice(list(DTYPE_BYTES)),
    help="Weights' type. "
    "[default: as stored: the GGUF's quantisation, or config.json's torch_dtype]",
)
@click.option(
    "--max-model-len",
    type=click.IntRange(min=1),
    help="Tokens per sequence. [default: the model's context length]",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Sequences held at once (vLLM's max_num_seqs, llmkit serve --parallel).",
)
@click.option(
    "--kv-cache-size",
    type=click.IntRange(min=1),
    help="Tokens of KV cache the sequences share (llmkit serve --kv-cache-size; a "
    "GGUF on llama.cpp). [default: max-model-len x batch]",
)
@click.option(
    "--tp",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Tensor-parallel devices the model is split over.",
)
@gpu_memory_option
@json_option
@cache_dir_option
def mem(
    model: str,
    dtype: str | None,
    max_model_len: int | None,
    batch: int,
    kv_cache_size: int | None,
    tp: int,
    gpu_memory: float | None,
    as_json: bool,
    cache_dir: Path | None,
) -> None:
    """How much memory a model needs, and whether it fits.

    MODEL is a catalog name, a .gguf file, a model directory, a tagged name
    (qwen2.5:7b), or a repository id: a GGUF repository is sized from ranged
    reads of each quantisation's header, a safetensors one from its config.json.

    \b
    llmkit mem Qwen/Qwen2-7B-Instruct --dtype float16 --max-model-len 32768
    llmkit mem meta-llama/Meta-Llama-3-70B-Instruct --tp 4 --gpu-memory 80
    llmkit mem qwen2.5:7b --batch 16 --kv-cache-size 32768
    """
    settings = _settings(cache_dir)
    try:
        with quiet_libraries():
            report = _remote_report(model, settings, gpu_memory, max_model_len, batch, tp)
        if report is not None:
            _print_report(report, model, as_json)
            return
        name, facts = _mem_facts(model, settings)
        budget = _budget(gpu_memory, settings, gguf=facts.format == "gguf")
        plan = Plan(
            dtype=dtype, context=max_model_len, sequences=batch, tp=tp, kv_tokens=kv_cache_size
        )
        verdict = judge(facts, plan, budget, MEM_FLAGS)
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
    if as_json:
        est = verdict.estimate
        out = {
            "model": name,
            "facts": facts.to_json(),
            "estimate": {**asdict(est), "per_device_bytes": est.per_device_bytes,
                         "total_bytes": est.total_bytes},
            "budget": asdict(verdict.budget),
            "fits": verdict.fits,
            "suggestions": verdict.suggestions,
            "notes": verdict.notes,
        }  # fmt: skip
        click.echo(json.dumps(out, indent=2))
        return
    for line in mem_lines(name, facts, verdict):
        click.echo(line)
