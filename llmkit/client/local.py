"""Finding the ``llmkit serve`` running on this machine.

A server records its address in ``<data dir>/server.json`` when it is ready and
removes it when it stops, so a client in any terminal finds it without
variables (the OLLAMA_HOST mismatch Ollama users know).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from llmkit.env import Environment
from llmkit.errors import UnreachableError


@dataclass(frozen=True)
class LocalServer:
    url: str
    pid: int
    models: list[str]


def local_server(env: Environment | None = None) -> LocalServer | None:
    """The running local server, or None (no record, or its process is gone)."""
    env = env or Environment.read()
    try:
        rec = json.loads(env.server_file.read_text())
        pid = int(rec["pid"])
        os.kill(pid, 0)  # is it alive? (signal 0 only checks)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return LocalServer(url=rec["url"], pid=pid, models=list(rec.get("models", [])))


def local_url(env: Environment | None = None) -> str:
    """The local server's address, or an error that says how to get one."""
    server = local_server(env)
    if server is None:
        raise UnreachableError(
            "No llmkit server is running on this machine. Start one in another terminal "
            "with `llmkit serve`, chat with the bundled model in-process with `llmkit run`, "
            "or give a server's address with --url."
        )
    return server.url
