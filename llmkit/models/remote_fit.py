"""Fit before fetch: whether a repository on a hub fits this machine, read from
the few bytes that say so, before any weights move.

A GGUF repository holds one file (or a set of shards) per quantisation; the
header of each (its key/values and tensor table, a few MB at the start of the
file) tells the model's shape and the bytes its weights take, so a ranged
read of each header is enough to size every quantisation. A safetensors
repository says its shape in ``config.json``. ``llmkit mem REPO`` prints the
result; ``llmkit pull`` refuses what cannot fit, and with ``--fit`` takes the
largest quantisation that does (ollama pulls first and fails out of memory at
load time: ollama#8471, #1952).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from llmkit.errors import InsufficientMemoryError, ModelSpecError
from llmkit.models.catalog import gguf_tag
from llmkit.models.fit import Budget, Plan, judge
from llmkit.models.gguf_header import SHARD_RE, TruncatedHeader, parse_gguf_header
from llmkit.models.hubs import Hub, RemoteFile
from llmkit.models.metadata import ModelFacts, facts_from_config, gguf_facts
from llmkit.models.sizing import MemoryEstimate, format_bytes

#: The first read of a header; doubled until the header is whole. Real headers
#: run to a few MB (a 150k-token vocabulary and its merges); most end in the first 8.
FIRST_READ = 1 << 20
#: No header is this long; past it the file is not a GGUF llmkit can size.
MAX_HEADER = 256 << 20
#: The context a fit is judged at when none is asked: the model's own, up to this.
#: ``serve`` gives a model that fits at least this much (more, when memory allows).
FIT_CONTEXT = 8192


@dataclass(frozen=True)
class FitPolicy:
    """How ``pull`` checks fit. ``choose``: of the quantisations selected, take the
    largest that fits (else all selected must fit). ``budget`` None: this
    machine's RAM (or ``LLMKIT_MEMORY_GIB``)."""

    choose: bool = False
    budget: Budget | None = None
    context: int | None = None
    sequences: int = 1


@dataclass(frozen=True)
class Quant:
    """One quantisation of a remote GGUF repository (or the one set of weights
    of a safetensors repository), sized."""

    label: str  # "Q4_K_M", "F16"; a safetensors repo: its dtype
    files: tuple[RemoteFile, ...]
    size: int  # bytes the hub lists for its files
    facts: ModelFacts | None
    estimate: MemoryEstimate | None
    fits: bool | None  # None: could not be sized
    why: str = ""  # when not sized


@dataclass
class FitReport:
    repo: str
    budget: Budget
    context: int | None
    sequences: int
    quants: list[Quant] = field(default_factory=list)
    bytes_read: int = 0  # header bytes fetched to size them

    def largest_fitting(self) -> Quant | None:
        fitting = [q for q in self.quants if q.fits]
        return max(fitting, key=_weight) if fitting else None

    def lines(self) -> list[str]:
        """The per-quantisation table, as ``mem`` and ``pull`` print it."""
        q0 = next((q for q in self.quants if q.facts), None)
        head = f"{self.repo}:"
        if q0 and q0.facts:
            f = q0.facts
            head += f" {f.architecture}, trained for {f.context_length or '?'} tokens"
        table = [("QUANT", "FILE", "SIZE", "NEEDS", "FITS")]
        for q in self.quants:
            name = q.files[0].path + (f" (+{len(q.files) - 1})" if len(q.files) > 1 else "")
            needs = format_bytes(q.estimate.per_device_bytes) if q.estimate else "?"
            fits = {True: "yes", False: "no", None: f"? {q.why}"}[q.fits]
            table.append((q.label, name, format_bytes(q.size), needs, fits))
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        out = [head]
        for r in table:
            cells = (c.ljust(w) for c, w in zip(r, widths, strict=True))
            out.append(("  " + "  ".join(cells)).rstrip())
        seqs = f" x {self.sequences} sequences" if self.sequences > 1 else ""
        out.append(
            f"budget {format_bytes(self.budget.bytes)} ({self.budget.source}), at "
            f"{self.context or '?'} tokens{seqs}; headers read: {format_bytes(self.bytes_read)}"
        )
        return out


def gguf_groups(files: list[RemoteFile]) -> dict[str, list[RemoteFile]]:
    """The repository's GGUF files by quantisation (a split model's shards together;
    vision projectors left out: they are not models on their own)."""
    groups: dict[str, list[RemoteFile]] = {}
    for f in sorted(files, key=lambda f: f.path):
        name = PurePosixPath(f.path)
        if name.suffix.lower() != ".gguf" or "mmproj" in name.name.lower():
            continue
        label = gguf_tag(name).upper()
        groups.setdefault(label, []).append(f)
    return groups


def _local_start(local: Path | None, file: RemoteFile) -> bytes:
    """What an earlier pull left of ``file`` (whole, or ``.incomplete``): a
    resumed pull reads its header from there, not from the hub."""
    if local is None:
        return b""
    for p in (local / file.path, local / (file.path + ".incomplete")):
        with contextlib.suppress(OSError):
            with p.open("rb") as f:
                return f.read(MAX_HEADER)
    return b""


def read_remote_header(
    hub: Hub,
    repo: str,
    revision: str,
    file: RemoteFile,
    first: int = FIRST_READ,
    local: Path | None = None,
) -> tuple[ModelFacts, int]:
    """The facts of a remote GGUF from ranged reads of its start, growing the read
    until the header is whole; (facts, bytes fetched). ``local``: the directory an
    earlier pull of the repository left files in."""
    buf = _local_start(local, file)
    if buf:
        with contextlib.suppress(TruncatedHeader, ValueError):
            return gguf_facts(parse_gguf_header(buf)), 0
    buf, want = b"", first
    limit = min(file.size or MAX_HEADER, MAX_HEADER)
    while True:
        buf += hub.read_range(repo, revision, file.path, len(buf), min(want, limit) - 1)
        try:
            return gguf_facts(parse_gguf_header(buf)), len(buf)
        except TruncatedHeader:
            if len(buf) >= limit or want >= limit:
                raise ModelSpecError(
                    f"{file.path}: no whole GGUF header in its first {format_bytes(len(buf))}."
                ) from None
            want *= 2
        except ValueError as e:
            raise ModelSpecError(f"{file.path} is not a GGUF file: {e}.") from None


def fit_context(facts: ModelFacts, asked: int | None) -> int:
    return asked or min(facts.context_length or 2048, FIT_CONTEXT)


def size_repo(
    hub: Hub,
    repo: str,
    revision: str,
    files: list[RemoteFile],
    budget: Budget,
    *,
    context: int | None = None,
    sequences: int = 1,
    local: Path | None = None,
) -> FitReport:
    """Every quantisation of ``files`` (a repository's listing, or the part of it a
    pull selected), sized from its header and judged against ``budget``."""
    report = FitReport(repo, budget, context, sequences)
    groups = gguf_groups(files)
    if not groups:
        config = next((f for f in files if f.path == "config.json"), None)
        if config is None:
            raise ModelSpecError(f"{repo} has neither GGUF files nor a config.json to size.")
        raw = hub.read_range(repo, revision, "config.json", 0, (config.size or MAX_HEADER) - 1)
        report.bytes_read = len(raw)
        try:
            facts = facts_from_config(json.loads(raw))
        except ValueError as e:
            raise ModelSpecError(f"{repo}'s config.json is not JSON: {e}.") from None
        weights = [f for f in files if f.path.endswith((".safetensors", ".bin", ".pt"))]
        report.quants.append(_judged(facts.dtype or "?", weights or [config], facts, report))
        return report
    for label, shards in groups.items():
        first = next((f for f in shards if (m := SHARD_RE.search(f.path)) is None
                      or m.group(1) == "00001"), shards[0])  # fmt: skip
        try:
            facts, n = read_remote_header(hub, repo, revision, first, local=local)
        except ModelSpecError as e:
            size = sum(f.size or 0 for f in shards)
            report.quants.append(Quant(label, tuple(shards), size, None, None, None, e.message))
            continue
        report.bytes_read += n
        if len(shards) > 1:
            # The other shards' tensors are counted from their listed sizes: their
            # headers are a few KB of the whole, and reading each would cost a request.
            extra = sum(f.size or 0 for f in shards if f is not first)
            facts = _with_more_weights(facts, extra)
        report.quants.append(_judged(label, shards, facts, report))
    report.quants.sort(key=_weight)
    return report


def _weight(q: Quant) -> int:
    """How big a quantisation is: its weights as its header declares them, else
    the bytes the hub lists."""
    return q.facts.weights_bytes if q.facts and q.facts.weights_bytes else q.size


def _with_more_weights(facts: ModelFacts, extra: int) -> ModelFacts:
    per_byte = (facts.n_params or 0) / (facts.weights_bytes or 1)
    return replace(
        facts,
        weights_bytes=(facts.weights_bytes or 0) + extra,
        n_params=(facts.n_params or 0) + int(extra * per_byte),
    )


def _judged(label: str, files: list[RemoteFile], facts: ModelFacts, report: FitReport) -> Quant:
    size = sum(f.size or 0 for f in files)
    context = fit_context(facts, report.context)
    if report.context is None:
        report.context = context
    try:
        v = judge(facts, Plan(context=context, sequences=report.sequences), report.budget)
    except ModelSpecError as e:
        return Quant(label, tuple(files), size, facts, None, None, e.message)
    return Quant(label, tuple(files), size, facts, v.estimate, v.fits)


def refuse(report: FitReport, what: str) -> InsufficientMemoryError:
    """The error for a pull none of whose (selected) quantisations fits."""
    sized = [q for q in report.quants if q.estimate]
    smallest = min(sized, key=lambda q: q.estimate.per_device_bytes) if sized else None
    if smallest is None or smallest.estimate is None:
        need = "could not be sized"
    else:
        e = smallest.estimate
        need = (
            f"{'the smallest, ' if len(sized) > 1 else ''}{smallest.label}"
            f"{',' if len(sized) > 1 else ''} needs {format_bytes(e.per_device_bytes)} (weights "
            f"{format_bytes(e.weights_per_device)} + KV cache {format_bytes(e.kv_per_device)} "
            f"for {e.context} tokens + overhead {format_bytes(e.overhead_bytes)})"
        )
    return InsufficientMemoryError(
        f"{what} does not fit: {need}, but only {format_bytes(report.budget.bytes)} is there "
        f"({report.budget.source}). Nothing was downloaded. Try a smaller model or "
        "quantisation (`llmkit mem REPO` lists them), a shorter --max-model-len, or "
        "--force to pull it anyway.",
        estimate=smallest.estimate if smallest else None,
    )
