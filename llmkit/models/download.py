"""``llmkit pull``: fetch a repository's files from the first source that can
deliver them, into the local catalog.

Sources are tried in order (``--source a,b`` or ``LLMKIT_SOURCES``); when one is
down or lacks the repository, the caller hears which and why, and the next one
is tried. Progress goes to one callback, as ollama's ``Pull(ctx, req, fn)`` does,
so a terminal and an API can show the same events.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from llmkit.env import SOURCES, ModelsSettings
from llmkit.errors import ModelSpecError, PullError
from llmkit.models.bundled import BUNDLED_NAME
from llmkit.models.catalog import Catalog, CatalogEntry
from llmkit.models.fit import Budget, machine_budget
from llmkit.models.hubs import Hub, HuggingFace, ModelScope, RemoteFile, SourceError
from llmkit.models.remote_fit import FitPolicy, FitReport, gguf_groups, refuse, size_repo
from llmkit.models.tags import TagTarget, lookup, split_name

#: Short names for common models: the repository each source keeps them under.
SHORT_NAMES: dict[str, dict[str, str]] = {
    "qwen2-7b-instruct": {"hf": "Qwen/Qwen2-7B-Instruct", "modelscope": "qwen/Qwen2-7B-Instruct"},
    "qwen2-7b-instruct-gguf": {
        "hf": "Qwen/Qwen2-7B-Instruct-GGUF",
        "modelscope": "qwen/Qwen2-7B-Instruct-GGUF",
    },
    "qwen2-0.5b-instruct": {
        "hf": "Qwen/Qwen2-0.5B-Instruct",
        "modelscope": "qwen/Qwen2-0.5B-Instruct",
    },
    "qwen2-0.5b-instruct-gguf": {
        "hf": "Qwen/Qwen2-0.5B-Instruct-GGUF",
        "modelscope": "qwen/Qwen2-0.5B-Instruct-GGUF",
    },
    "smollm2-135m-instruct": {"hf": "HuggingFaceTB/SmolLM2-135M-Instruct"},
    "llama-3-8b-instruct": {
        "hf": "meta-llama/Meta-Llama-3-8B-Instruct",
        "modelscope": "LLM-Research/Meta-Llama-3-8B-Instruct",
    },
}


@dataclass(frozen=True)
class PullRequest:
    repo: str  # a repository id, or a short name from SHORT_NAMES
    revision: str | None = None  # branch, tag or commit; None: the source's default
    include: tuple[str, ...] = ()  # glob patterns, matched case-insensitively
    exclude: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # in order; empty: the settings' order


@dataclass(frozen=True)
class PullEvent:
    """One step of a pull.

    status: "trying" (a source, at ``message`` = its endpoint), "fit" (before
    any file is fetched: ``report``, the quantisations sized from their headers;
    ``message``, the one chosen), "files" (the plan: ``files`` with sizes,
    ``total`` bytes), "downloading" (``file`` has
    ``completed`` of ``total`` bytes), "failed" (a source, ``message`` says why),
    "success".
    """

    status: str
    source: str | None = None
    file: str | None = None
    completed: int = 0
    total: int | None = None
    files: tuple[RemoteFile, ...] = field(default=())
    message: str = ""
    report: FitReport | None = None


PullProgressFunc = Callable[[PullEvent], None]


def repo_for(name: str, source: str, target: TagTarget | None = None) -> str | None:
    """The repository ``name`` means on ``source`` (None: that source lacks the
    short name or tag)."""
    if target is not None:
        return target.repo_on(source)
    names = SHORT_NAMES.get(name.lower())
    if names is None:
        return name
    return names.get(source) or (names.get("hf") if source == "hf-mirror" else None)


def tag_target(name: str, settings: ModelsSettings) -> TagTarget | None:
    """``name`` as an Ollama-style name from the tag catalog, unless it is a
    repository id or one of ``SHORT_NAMES``."""
    if "/" in name or name.lower() in SHORT_NAMES:
        return None
    return lookup(name, settings.tags_file)


def _bundled(name: str) -> bool:
    family, tag = split_name(name)
    return family == BUNDLED_NAME.lower() and tag == "latest"


def hub_for(source: str, settings: ModelsSettings) -> HuggingFace | ModelScope:
    endpoint = settings.endpoint(source)
    if source == "modelscope":
        return ModelScope(endpoint, cache_dir=settings.modelscope_cache)
    return HuggingFace(
        endpoint, cache_dir=settings.hf_home / "hub", send_token=source != "hf-mirror"
    )


def inside(relative: str) -> bool:
    """Is ``relative`` a path that stays within the directory it is joined to?"""
    parts = relative.replace("\\", "/").split("/")
    return not relative.startswith("/") and ".." not in parts and ":" not in parts[0]


def select(
    files: Iterable[RemoteFile], include: tuple[str, ...], exclude: tuple[str, ...]
) -> list[RemoteFile]:
    """The files matching any ``include`` pattern (all when none) and no ``exclude``."""

    def hit(path: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(path.lower(), p.lower()) for p in patterns)

    # .gitattributes and the like; and no file a hub lists may land outside the
    # repository's directory ("../x", "/etc/x"), whatever the hub says.
    wanted = [f for f in files if not f.path.startswith(".") and inside(f.path)]
    return [f for f in wanted if (not include or hit(f.path, include)) and not hit(f.path, exclude)]


def pull(
    req: PullRequest,
    settings: ModelsSettings,
    fn: PullProgressFunc | None = None,
    *,
    fit: FitPolicy | bool | None = None,
) -> list[CatalogEntry]:
    """Download ``req`` into the catalog; returns its entries (one per GGUF file).

    ``fit``: check before any file byte moves that what is pulled fits this
    machine (a ``FitPolicy``; True: take the largest quantisation that fits), and
    refuse with ``InsufficientMemoryError`` when nothing selected does."""
    emit = fn or (lambda event: None)
    catalog = Catalog(settings.models_dir)
    if _bundled(req.repo):
        return [catalog.find(BUNDLED_NAME)]  # ships with llmkit: nothing to fetch
    policy = FitPolicy(choose=True) if fit is True else (fit or None)
    target = tag_target(req.repo, settings)
    include = req.include
    if target is not None and not include:
        # --fit chooses among all quantisations, unless the name said which.
        choosing = policy is not None and policy.choose and not target.quant_given
        include = ("*.gguf",) if choosing else target.include
    attempts: list[tuple[str, str]] = []
    for source in req.sources or tuple(settings.sources):
        if source not in SOURCES:
            raise ModelSpecError(f"Unknown source '{source}': use {', '.join(SOURCES)}.")
        repo = repo_for(req.repo, source, target)
        if repo is None:
            attempts.append((source, f"has no repository for the name '{req.repo}'"))
            emit(PullEvent("failed", source=source, message=attempts[-1][1]))
            continue
        hub = hub_for(source, settings)
        emit(PullEvent("trying", source=source, message=hub.endpoint))
        try:
            revision, listing = hub.list_files(repo, req.revision)
            files = select(listing, include, req.exclude)
            if files and policy is not None:
                files = _fitting(hub, repo, revision, files, policy, settings, source, emit)
            if not files:
                names = ", ".join(f.path for f in listing[:20]) or "none"
                raise ModelSpecError(
                    f"No file of {repo} matches --include {' '.join(include) or '*'}"
                    f"{' --exclude ' + ' '.join(req.exclude) if req.exclude else ''}. "
                    f"Its files: {names}."
                )
            total = sum(f.size or 0 for f in files)
            emit(PullEvent("files", source=source, files=tuple(files), total=total))
            alias = req.repo if repo != req.repo else None
            dest = catalog.begin(repo, source=source, revision=req.revision, alias=alias)

            def on_bytes(path: str, done: int, size: int | None, source: str = source) -> None:
                emit(PullEvent("downloading", source=source, file=path, completed=done, total=size))

            hub.download(repo, revision, files, dest, on_bytes)
        except SourceError as e:
            attempts.append((source, f"({hub.endpoint}) {e.reason}"))
            emit(PullEvent("failed", source=source, message=e.reason))
            continue
        entries = catalog.finish(repo)
        emit(PullEvent("success", source=source, message=repo))
        return entries
    raise PullError(
        f"Could not pull {req.repo}: "
        + "; ".join(f"{source} {reason}" for source, reason in attempts)
        + ".",
        attempts=attempts,
    )


def _fitting(
    hub: Hub,
    repo: str,
    revision: str,
    files: list[RemoteFile],
    policy: FitPolicy,
    settings: ModelsSettings,
    source: str,
    emit: PullProgressFunc,
) -> list[RemoteFile]:
    """The files to fetch once the fit is known: with ``choose``, the largest
    quantisation that fits; else all of ``files``, when each fits. Refuses
    (InsufficientMemoryError) before a byte of any of them is fetched."""
    # A GGUF runs on llama.cpp, in RAM; anything else is sized for a GPU (RAM without one).
    gguf = bool(gguf_groups(files))
    budget = policy.budget or machine_budget(gpu=not gguf, memory_gib=settings.memory_gib)
    report = size_repo(
        hub, repo, revision, files, budget, context=policy.context,
        sequences=policy.sequences, local=Catalog(settings.models_dir).directory_for(repo),
    )  # fmt: skip
    if policy.choose:
        best = report.largest_fitting()
        if best is None:
            raise refuse(report, repo)
        emit(PullEvent("fit", source=source, report=report, message=best.label))
        return list(best.files)
    too_big = [q for q in report.quants if q.fits is False]
    if too_big:
        raise refuse(report, f"{repo} ({', '.join(q.label for q in too_big)})")
    emit(PullEvent("fit", source=source, report=report))
    return files


def fetch_config(repo: str, settings: ModelsSettings, dest: Path) -> Path:
    """Only the files that describe ``repo`` (config.json, the safetensors index,
    tokenizer config, model card), for sizing a model before pulling it."""
    wanted = ("config.json", "model.safetensors.index.json", "tokenizer_config.json", "README.md")
    attempts: list[tuple[str, str]] = []
    for source in settings.sources:
        name = repo_for(repo, source)
        if name is None:
            continue
        hub = hub_for(source, settings)
        try:
            revision, listing = hub.list_files(name, None)
            files = [f for f in listing if f.path in wanted]
            if not any(f.path == "config.json" for f in files):
                raise ModelSpecError(f"{name} on {source} has no config.json to size it from.")
            hub.download(name, revision, files, dest, lambda *a: None)
            return dest
        except SourceError as e:
            attempts.append((source, f"({hub.endpoint}) {e.reason}"))
    raise PullError(
        f"Could not fetch the config of {repo}: "
        + "; ".join(f"{s} {r}" for s, r in attempts)
        + ".",
        attempts=attempts,
    )


def size_remote(
    name: str,
    settings: ModelsSettings,
    budget: Budget,
    *,
    context: int | None = None,
    sequences: int = 1,
) -> FitReport | None:
    """Each GGUF quantisation of a repository (or tagged name) not pulled, sized
    from ranged reads of its header; None when the repository holds no GGUF (its
    config.json sizes it: ``fetch_config``)."""
    target = tag_target(name, settings)
    attempts: list[tuple[str, str]] = []
    for source in settings.sources:
        repo = repo_for(name, source, target)
        if repo is None:
            continue
        hub = hub_for(source, settings)
        try:
            revision, listing = hub.list_files(repo, None)
            files = select(listing, target.include if target and target.quant_given else (), ())
            if not gguf_groups(files):
                return None
            return size_repo(hub, repo, revision, files, budget, context=context,
                             sequences=sequences)  # fmt: skip
        except SourceError as e:
            attempts.append((source, f"({hub.endpoint}) {e.reason}"))
    raise PullError(
        f"Could not size {name}: " + "; ".join(f"{s} {r}" for s, r in attempts) + ".",
        attempts=attempts,
    )
