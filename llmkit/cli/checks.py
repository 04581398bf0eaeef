"""The checks ``llmkit doctor`` runs, each one a function of the environment
snapshot that returns ``Check``s: what was found, and when something is wrong,
what to do about it. Nothing here changes anything on the machine.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx

from llmkit.engines.spec import Check, Status, load_specs
from llmkit.env import Environment, ModelsSettings
from llmkit.models.fit import available_ram
from llmkit.models.sizing import GIB, format_bytes

MARKS: dict[Status, str] = {"ok": "✓", "warn": "!", "fail": "✗", "info": "·"}
HUB_TIMEOUT_S = 3.0
LOW_DISK = 2 * GIB  # below this, a pull of a small model may not fit


def engine_builds(env: Environment, models: ModelsSettings) -> list[Check]:
    """Each registered engine's own lines (llama.cpp: its build), asked of its spec."""
    return [c for spec in load_specs() if spec.doctor is not None for c in spec.doctor()]


def memory(env: Environment, models: ModelsSettings) -> list[Check]:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    free = available_ram()
    shown = f"{format_bytes(total)} total, {format_bytes(free)} available"
    if models.memory_gib is not None:
        shown += f"; planning for {models.memory_gib:g} GiB (LLMKIT_MEMORY_GIB)"
    if free < GIB:
        return [Check("warn", "memory", shown, "close programs or serve a smaller model")]
    return [Check("ok", "memory", shown)]


def _directory(name: str, path: Path, variable: str) -> Check:
    """A directory llmkit writes to: it may not exist yet, if it can be created."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fix = f"make it writable (chmod u+w {existing}) or point {variable} at a writable folder"
    if existing != path and not existing.is_dir():
        return Check("fail", name, f"{path}: {existing} is not a directory", fix)
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (its parent {existing} is not)"
        return Check("fail", name, f"{path} is not writable{where}", fix)
    free = shutil.disk_usage(existing).free
    state = "writable" if existing == path else "not created yet; will be on first use"
    shown = f"{path} ({state}; {format_bytes(free)} free)"
    if free < LOW_DISK:
        return Check("warn", name, shown, "free some space before pulling a model")
    return Check("ok", name, shown)


def directories(env: Environment, models: ModelsSettings) -> list[Check]:
    return [
        _directory("data dir", env.data_dir, "LLMKIT_HOME"),
        _directory("models dir", models.models_dir, "LLMKIT_MODELS"),
    ]


def store(env: Environment, models: ModelsSettings) -> list[Check]:
    import sqlalchemy as sa

    from llmkit.memory.database import store_url
    from llmkit.memory.inspect import inspect_store

    url = store_url(env)
    try:
        state = inspect_store(url)
    except (sa.exc.SQLAlchemyError, ImportError, OSError) as e:
        cause = str(getattr(e, "orig", None) or e).splitlines()[0]
        return [
            Check(
                "fail",
                "store",
                f"cannot read {sa.make_url(url).render_as_string(hide_password=True)}: {cause}",
                "check LLMKIT_STORE (a SQLAlchemy URL) and that its database is up",
            )
        ]
    if not state.exists:
        return [Check("ok", "store", f"{state.url}: not created yet (the first chat creates it)")]
    size = f", {format_bytes(state.size_bytes)}" if state.size_bytes is not None else ""
    schema = f"schema {len(state.applied)} ({', '.join(state.applied) or 'none'})"
    shown = f"{state.url}: {state.conversations} conversations{size}, {schema}"
    if state.newer:
        return [
            Check(
                "fail",
                "store",
                f"{shown}; written by a newer llmkit ({', '.join(state.newer)})",
                "upgrade llmkit, or point LLMKIT_STORE at another store",
            )
        ]
    if state.pending:
        return [
            Check(
                "warn",
                "store",
                f"{shown}; {len(state.pending)} migration(s) to apply",
                "they apply the next time a chat opens the store",
            )
        ]
    return [Check("ok", "store", shown)]


def server(env: Environment, models: ModelsSettings, url: str | None = None) -> list[Check]:
    from llmkit.client.http import Client
    from llmkit.client.local import local_server
    from llmkit.errors import LlmkitError

    if url is None:
        found = local_server(env)
        if found is None:
            return [Check("info", "server", "none running (`llmkit serve` starts one)")]
        url = found.url
    try:
        with Client(url, dialect="ollama", api_key=env.api_key, timeout=HUB_TIMEOUT_S) as c:
            version, names = c.version(), c.models()
    except LlmkitError as e:
        return [
            Check(
                "fail",
                "server",
                f"{url} does not answer: {e.message.split('. ')[0]}",
                "start it with `llmkit serve`, or check the address",
            )
        ]
    return [Check("ok", "server", f"{url}: version {version}, models {', '.join(names) or 'none'}")]


def hubs(env: Environment, models: ModelsSettings) -> list[Check]:
    """Each source ``pull`` would try; a failure only when none answers."""
    found = []
    for source in models.sources:
        endpoint = models.endpoint(source)
        try:
            httpx.get(endpoint, timeout=HUB_TIMEOUT_S)
            found.append(Check("ok", f"hub {source}", f"{endpoint} answers"))
        except httpx.HTTPError as e:
            reason = type(e).__name__
            found.append(Check("warn", f"hub {source}", f"{endpoint} unreachable ({reason})"))
    if all(c.status != "ok" for c in found):
        advice = (
            "`llmkit pull` cannot fetch anything: check the network or proxy, or set "
            "HF_ENDPOINT / LLMKIT_HF_MIRROR / MODELSCOPE_ENDPOINT to a reachable hub "
            "(models already on disk still serve)"
        )
        # One piece of advice for them all, under the last.
        found = [
            Check("fail", c.name, c.detail, advice if i == len(found) - 1 else "")
            for i, c in enumerate(found)
        ]
    elif any(c.status == "warn" for c in found):
        found = [
            c
            if c.status == "ok"
            else Check(c.status, c.name, c.detail, "pull falls back to the next source")
            for c in found
        ]
    return found


CHECKS: tuple[Callable[[Environment, ModelsSettings], list[Check]], ...] = (
    engine_builds,
    memory,
    directories,
    store,
    hubs,
)
