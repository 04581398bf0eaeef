"""A stand-in model hub on loopback, speaking the endpoints the real
``huggingface_hub`` and ``modelscope`` clients call, so pull tests run the real
clients end to end with no internet.

Hugging Face flavour (what ``HfApi.model_info``, ``list_repo_tree`` and
``hf_hub_download`` use):
    GET  /api/models/{owner}/{name}/revision/{rev}      -> {"id", "sha", "siblings"}
    GET  /api/models/{owner}/{name}/tree/{rev}          -> [{"type", "path", "size", "oid"}]
    HEAD /{owner}/{name}/resolve/{rev}/{path}           -> ETag, X-Repo-Commit, Content-Length
    GET  /{owner}/{name}/resolve/{rev}/{path}           -> the bytes (Range "bytes=a-[b]" honoured)
ModelScope flavour (``HubApi.list_repo_files`` and ``snapshot_download``):
    GET  /api/v1/models/{owner}/{name}/repo/files?Revision=&Recursive=
    GET  /api/v1/models/{owner}/{name}/repo?Revision=&FilePath=   (Range honoured)
    GET  /api/v1/models/{owner}/{name}                   -> repo info

A missing repository answers 404 the way each hub does (``X-Error-Code:
RepoNotFound``; ``{"Code": 10010205001, ...}``). Faults for the tests:
``drop_after[path] = n`` cuts the connection after n bytes of the first
full-file GET; ``hold_after[path] = n`` sends n bytes and then waits for
``release`` (the test kills the client meanwhile).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

SHA = "a" * 40  # the one commit every repository is at
LFS = (".gguf", ".safetensors", ".bin")  # kept in LFS, so the tree gives their sha256


@dataclass
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class StandinHub:
    flavour: str  # "hf" or "modelscope"
    repos: dict[str, dict[str, bytes]]
    drop_after: dict[str, int] = field(default_factory=dict)
    hold_after: dict[str, int] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes sent, per file
    release: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandinHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def gets(self, path: str) -> list[Seen]:
        """The GETs of one file (either flavour)."""
        return [
            s for s in self.seen if s.method == "GET" and (s.path.endswith("/" + path) or
                                                          f"FilePath={path}" in s.path)
        ]  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    hub: StandinHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # -- routing ------------------------------------------------------------------

    def _route(self, head: bool) -> None:
        hub = self.hub
        hub.seen.append(Seen(self.command, self.path, self.headers.get("Range")))
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if hub.flavour == "hf":
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
                return self._hf_info(m[1], m[2])
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
                return self._hf_tree(m[1], m[2])
            if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._file(m[1], m[3], head, revision=m[2])
        else:
            if m := re.fullmatch(r"/api/v1/models/([^/]+/[^/]+)/repo/files", path):
                return self._ms_files(m[1])
            if m := re.fullmatch(r"/api/v1/models/([^/]+/[^/]+)/repo", path):
                return self._file(m[1], query.get("FilePath", [""])[0], head)
            if m := re.fullmatch(r"/api/v1/models/([^/]+/[^/]+)", path):
                return self._ms_info(m[1])
        self._json(404, {"error": f"no route {path}"})

    # -- Hugging Face ---------------------------------------------------------------

    def _hf_missing(self, repo: str, revision: str | None = None) -> bool:
        if repo not in self.hub.repos:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return True
        if revision is not None and revision not in ("main", SHA):
            self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return True
        return False

    def _hf_info(self, repo: str, revision: str) -> None:
        if self._hf_missing(repo, revision):
            return
        files = self.hub.repos[repo]
        body = {"id": repo, "sha": SHA, "siblings": [{"rfilename": p} for p in files]}
        self._json(200, body)

    def _hf_tree(self, repo: str, revision: str) -> None:
        if self._hf_missing(repo, revision):
            return
        self._json(200, [
            {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest(),
             **({"lfs": {"oid": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}}
                if p.endswith(LFS) else {})}
            for p, b in self.hub.repos[repo].items()
        ])  # fmt: skip

    # -- ModelScope -----------------------------------------------------------------

    def _ms_missing(self, repo: str) -> bool:
        if repo in self.hub.repos:
            return False
        self._json(
            404, {"Code": 10010205001, "Message": f"model {repo} not exists", "Success": False}
        )
        return True

    def _ms_info(self, repo: str) -> None:
        if not self._ms_missing(repo):
            self._json(200, {"Code": 200, "Data": {"Path": repo}, "Success": True})

    def _ms_files(self, repo: str) -> None:
        if self._ms_missing(repo):
            return
        files = [
            {"Path": p, "Name": p.rsplit("/", 1)[-1], "Size": len(b), "Type": "blob",
             "Sha256": hashlib.sha256(b).hexdigest(), "Revision": SHA}
            for p, b in self.hub.repos[repo].items()
        ]  # fmt: skip
        self._json(200, {"Code": 200, "Data": {"Files": files}, "Success": True})

    # -- files, with Range and faults -------------------------------------------------

    def _file(self, repo: str, name: str, head: bool, revision: str | None = None) -> None:
        hub = self.hub
        if self.hub.flavour == "hf" and self._hf_missing(repo, revision):
            return
        if self.hub.flavour != "hf" and self._ms_missing(repo):
            return
        data = self.hub.repos[repo].get(name)
        if data is None:
            headers = {"X-Error-Code": "EntryNotFound"} if self.hub.flavour == "hf" else {}
            return self._json(404, {"error": "Entry not found"}, headers)
        start, end = 0, len(data) - 1
        rng = self.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())):
            start = int(m[1])
            end = min(int(m[2]), end) if m[2] else end
        body = data[start : end + 1]
        ranged = bool(start) or end < len(data) - 1
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", SHA)
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if head:
            return
        hub.sent[name] = hub.sent.get(name, 0) + len(body)
        if not ranged and name in self.hub.drop_after:
            # The first full download of this file loses its connection part-way.
            self.wfile.write(body[: self.hub.drop_after.pop(name)])
            self.wfile.flush()
            self.close_connection = True
            return
        if not ranged and name in self.hub.hold_after:
            self.wfile.write(body[: self.hub.hold_after.pop(name)])
            self.wfile.flush()
            self.hub.holding.set()
            self.hub.release.wait(60)
            self.close_connection = True
            return
        self.wfile.write(body)

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)
