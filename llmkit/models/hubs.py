"""The hubs llmkit pulls from, each driven through its own client library:
``huggingface_hub`` for Hugging Face and its mirrors, ``modelscope`` for
ModelScope. Each adapter does two things, list a repository's files and download
some of them into a directory, reporting bytes as they arrive; and it turns its
library's exceptions into one ``SourceError`` saying what went wrong.

Resuming: both libraries retry a dropped transfer with an HTTP Range request
from the last byte received, and the partial file of a killed pull stays on disk
(``<file>.incomplete``) for the next pull to continue. Files already complete
are never fetched again.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llmkit.errors import DiskFullError

#: on_bytes(file, bytes_so_far, file_size): progress of one file.
BytesFunc = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None = None  # the content's digest, where the hub says it (LFS files)


class SourceError(Exception):
    """A source could not deliver; ``kind`` is "not_found", "unreachable" or "failed"."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Hub(Protocol):
    endpoint: str
    default_revision: str

    def list_files(self, repo: str, revision: str | None) -> tuple[str, list[RemoteFile]]:
        """(the revision to download, resolved where the hub can; the repository's files)."""
        ...

    def download(
        self, repo: str, revision: str, files: list[RemoteFile], dest: Path, on_bytes: BytesFunc
    ) -> None: ...

    def read_range(self, repo: str, revision: str, path: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` (inclusive) of one file: an HTTP Range request
        to the URL a download would use, for reading a header without the weights."""
        ...


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class HuggingFace:
    """Hugging Face, or anything speaking its API (hf-mirror.com, HF_ENDPOINT)."""

    default_revision = "main"

    def __init__(self, endpoint: str, *, cache_dir: Path, send_token: bool = True) -> None:
        self.endpoint = endpoint
        self.cache_dir = cache_dir
        # Never hand the user's Hugging Face token to a third-party mirror.
        self.token: bool | None = None if send_token else False

    def list_files(self, repo: str, revision: str | None) -> tuple[str, list[RemoteFile]]:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self.endpoint, token=self.token)
        with self._errors(repo):
            info = api.model_info(repo, revision=revision or self.default_revision)
            tree = api.list_repo_tree(repo, revision=info.sha, recursive=True)
            files = [
                RemoteFile(f.path, f.size, f.lfs.sha256 if f.lfs else None)
                for f in tree
                if isinstance(f, RepoFile)
            ]
        return info.sha or revision or self.default_revision, files

    def download(
        self, repo: str, revision: str, files: list[RemoteFile], dest: Path, on_bytes: BytesFunc
    ) -> None:
        """Each file goes to ``<file>.incomplete`` first, through huggingface_hub's
        own ``http_get``. hf_hub_download keeps its partial file per process (and
        loses it with a killed process); a stable name lets the next pull ask
        only for the bytes after it. A file already in Hugging Face's own cache
        is linked or copied from there."""
        from huggingface_hub import hf_hub_url, try_to_load_from_cache
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        headers = build_hf_headers(token=self.token)
        for f in files:
            target = dest / f.path
            if target.exists() and (f.size is None or target.stat().st_size == f.size):
                on_bytes(f.path, f.size or 0, f.size)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._errors(repo):
                cached = try_to_load_from_cache(
                    repo, f.path, cache_dir=self.cache_dir, revision=revision
                )
                if isinstance(cached, str):
                    _link_or_copy(Path(cached), target)
                else:
                    part = target.with_name(target.name + ".incomplete")
                    url = hf_hub_url(repo, f.path, revision=revision, endpoint=self.endpoint)
                    with part.open("ab") as out:
                        http_get(
                            url,
                            out,
                            resume_size=out.tell(),
                            headers=headers,
                            expected_size=f.size,
                            displayed_filename=f.path,
                            tqdm_class=_bar_class(f, on_bytes),  # type: ignore[arg-type]
                        )
                    part.replace(target)
            on_bytes(f.path, f.size or 0, f.size)

    def read_range(self, repo: str, revision: str, path: str, start: int, end: int) -> bytes:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = hf_hub_url(repo, path, revision=revision, endpoint=self.endpoint)
        headers = {**build_hf_headers(token=self.token), "Range": f"bytes={start}-{end}"}
        with self._errors(repo):
            # The session huggingface_hub downloads with: its proxies, its timeouts;
            # LFS files redirect to a CDN, which honours the Range header too.
            with get_session().stream("GET", url, headers=headers, follow_redirects=True) as r:
                if r.status_code >= 400:
                    r.read()
                    hf_raise_for_status(r)
                return _ranged_body(r.status_code, r.iter_bytes(), start, end)

    def _errors(self, repo: str) -> Any:
        return _Translate(repo, self.endpoint, _hf_kind)


def _ranged_body(status: int, chunks: Iterable[bytes], start: int, end: int) -> bytes:
    """The asked-for bytes. A server that ignores Range answers 200 with the whole
    file: read only up to ``end`` of it and hang up, never the weights."""
    skip = start if status == 200 else 0
    want = end - start + 1
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) >= skip + want:
            break
    return bytes(out[skip : skip + want])


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src.resolve(), dst)  # same disk: no second copy of the weights
    except OSError:
        shutil.copyfile(src, dst)


def _hf_kind(e: BaseException) -> str | None:
    import httpx2
    from huggingface_hub import errors

    if isinstance(
        e,
        (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.EntryNotFoundError),
    ) and not isinstance(e, errors.LocalEntryNotFoundError):
        return "not_found"
    if isinstance(e, (httpx2.TransportError, errors.LocalEntryNotFoundError)):
        return "unreachable"
    if isinstance(e, (errors.HfHubHTTPError, httpx2.HTTPError, OSError, ValueError)):
        return "failed"
    return None


class ModelScope:
    default_revision = "master"

    def __init__(self, endpoint: str, *, cache_dir: Path) -> None:
        self.endpoint = endpoint
        self.cache_dir = cache_dir

    def list_files(self, repo: str, revision: str | None) -> tuple[str, list[RemoteFile]]:
        from modelscope_hub.api import HubApi

        revision = revision or self.default_revision
        with _Translate(repo, self.endpoint, _ms_kind), _quiet_modelscope():
            infos = HubApi(endpoint=self.endpoint).list_repo_files(repo, "model", revision=revision)
        return revision, [
            RemoteFile(f.path, f.size, getattr(f, "sha256", None) or None)
            for f in infos
            if not f.is_dir
        ]

    def download(
        self, repo: str, revision: str, files: list[RemoteFile], dest: Path, on_bytes: BytesFunc
    ) -> None:
        from modelscope.hub.snapshot_download import snapshot_download
        from modelscope_hub import ProgressCallback

        class Callback(ProgressCallback):
            def __init__(self, filename: str, file_size: int) -> None:
                super().__init__(filename, file_size)
                self.done = 0

            def update(self, size: int) -> None:
                self.done += size
                on_bytes(self.filename, self.done, self.file_size or None)

        with _Translate(repo, self.endpoint, _ms_kind), _quiet_modelscope():
            snapshot_download(
                repo,
                revision=revision,
                local_dir=str(dest),
                cache_dir=str(self.cache_dir),
                allow_patterns=[glob.escape(f.path) for f in files],
                endpoint=self.endpoint,
                progress_callbacks=[Callback],
            )
        for f in files:
            on_bytes(f.path, f.size or 0, f.size)

    def read_range(self, repo: str, revision: str, path: str, start: int, end: int) -> bytes:
        import requests
        from modelscope.hub.file_download import get_file_download_url
        from modelscope_hub.errors import NotExistError

        url = get_file_download_url(repo, path, revision, endpoint=self.endpoint)
        with _Translate(repo, self.endpoint, _ms_kind):
            with requests.get(
                url, headers={"Range": f"bytes={start}-{end}"}, timeout=60, stream=True
            ) as r:
                if r.status_code == 404:
                    raise NotExistError(f"{repo}/{path} not found")
                r.raise_for_status()
                return _ranged_body(r.status_code, r.iter_content(1 << 16), start, end)


def _ms_kind(e: BaseException) -> str | None:
    import requests
    from modelscope_hub import errors

    # modelscope's snapshot_download re-raises "not found" as requests.HTTPError.
    causes = [e, e.__cause__]
    if any(isinstance(c, errors.NotExistError) for c in causes):
        return "not_found"
    if any(
        isinstance(c, (errors.NetworkError, errors.RequestTimeoutError, requests.ConnectionError))
        for c in causes
    ):
        return "unreachable"
    if isinstance(e, (errors.HubError, requests.RequestException, OSError, ValueError)):
        return "failed"
    return None


@dataclass
class _Translate:
    """Turn a client library's exception into a SourceError (the most specific kind)."""

    repo: str
    endpoint: str
    kind_of: Callable[[BaseException], str | None]

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type | None, e: BaseException | None, tb: object) -> bool:
        if e is None or isinstance(e, SourceError):
            return False
        full = _disk_full(e)
        if full is not None:  # not the source's fault: no other source would do better
            raise DiskFullError(
                f"The disk is full ({full}): the files pulled so far are kept, and the "
                "next `llmkit pull` resumes them once there is room (`llmkit mem` says "
                "how big a model is; `--cache-dir` puts models on another disk)."
            ) from e
        kind = self.kind_of(e)
        if kind is None:
            return False
        if kind == "not_found":
            reason = f"repository '{self.repo}' not found (or not public)"
        elif kind == "unreachable":
            reason = f"unreachable: {_first_line(_root(e))}"
        else:
            reason = f"failed: {_first_line(e)}"
        raise SourceError(kind, reason) from e


def _disk_full(e: BaseException) -> str | None:
    """The file a "no space left" error was about, somewhere in ``e``'s chain."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return str(seen.filename or seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _root(e: BaseException) -> BaseException:
    """The innermost error: through ``raise ... from``, urllib3's ``reason`` and
    requests' wrapped first argument, to the "[Errno 111] Connection refused"."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        inner = e.__cause__ or getattr(e, "reason", None) or (e.args[0] if e.args else None)
        if not isinstance(inner, BaseException):
            break
        e = inner
    return e


def _bar_class(f: RemoteFile, on_bytes: BytesFunc) -> type:
    """A stand-in for tqdm that huggingface_hub drives for one file's transfer."""

    class Bar:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kw: Any):
            self.n = initial
            self.total = total or f.size
            on_bytes(f.path, self.n, self.total)

        def update(self, n: int | float | None = 1) -> None:
            self.n += int(n or 0)
            on_bytes(f.path, self.n, self.total)

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def close(self) -> None:
            return None

    return Bar


class _quiet_modelscope:
    """modelscope draws tqdm bars and logs INFO lines of its own on stderr; llmkit
    draws its own progress from the callbacks, so the library keeps to warnings
    for the duration of a call."""

    def __enter__(self) -> None:
        import functools
        import logging

        from modelscope_hub import _download
        from modelscope_hub.utils.logger import get_logger

        self._module = _download
        self._saved = getattr(_download, "tqdm", None)
        if self._saved is not None:
            _download.tqdm = functools.partial(self._saved, disable=True)
        self._logger = get_logger()  # configures the library's logger now, not later
        self._level = self._logger.level
        self._logger.setLevel(max(self._level, logging.WARNING))

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            self._module.tqdm = self._saved
        self._logger.setLevel(self._level)
