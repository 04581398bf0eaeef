"""``llmkit ps`` (the models a running server holds in memory) and ``llmkit stop``
(unload one now), as Ollama users type them.

Both ask the server over Ollama's own routes (``/api/ps``; an empty generate with
``keep_alive`` 0), so they work against a real Ollama too; llmkit's ``/api/ps``
adds the engine, the slots in use, the queue and speculative decoding (its mode
and the share of drafted tokens accepted).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from llmkit.client.http import Client
from llmkit.client.local import local_url
from llmkit.env import Environment
from llmkit.errors import LlmkitError
from llmkit.models.sizing import format_bytes

url_option = click.option(
    "--url",
    help="The server to ask (default: the local llmkit serve). [env: LLMKIT_URL]",
)
api_key_option = click.option("--api-key", help="Bearer key for the server. [env: LLMKIT_API_KEY]")

# Ollama shows a model kept for good with an expiry decades away.
_FOREVER_S = 50 * 365 * 86400


def _client(url: str | None, api_key: str | None) -> Client:
    env = Environment.read()
    return Client(
        url or env.url or local_url(env), api_key=api_key or env.api_key, dialect="ollama"
    )


def rows(models: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """``/api/ps`` entries, one per served model (its aliases listed beside its
    name: the server lists each name on its own), with the time left in seconds."""
    out: dict[str, dict[str, Any]] = {}
    for m in models:
        key = m.get("served_as") or m["name"]  # llmkit's; an Ollama lists no aliases
        # Ollama lists an untagged name as NAME:latest; llmkit shows it as it was served.
        name = m["name"].removesuffix(":latest")
        if key in out:
            out[key]["aliases"].append(name)
            continue
        expires = m.get("expires_at")
        left: float | None = None
        if expires:
            when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
            left = (when - now).total_seconds()
            left = None if left > _FOREVER_S else max(0.0, left)
        out[key] = {
            "name": name,
            "aliases": [],
            "engine": m.get("engine") or "?",
            "size": m.get("size", 0),
            "size_vram": m.get("size_vram", 0),
            "context_length": m.get("context_length"),
            "slots": m.get("slots"),
            "slots_in_use": m.get("slots_in_use"),
            "queue": m.get("queue"),
            "speculative": m.get("speculative") or "",
            "expires_at": expires,
            "expires_in_s": left,
        }
    return list(out.values())


def until(left: float | None) -> str:
    if left is None:
        return "forever"
    s = round(left)
    if s < 60:
        return f"in {s}s"
    if s < 3600:
        return f"in {s // 60}m {s % 60:02d}s"
    return f"in {s // 3600}h {s % 3600 // 60:02d}m"


def _slots(r: dict[str, Any]) -> str:
    if not r["slots"]:
        return "?" if r["slots_in_use"] is None else str(r["slots_in_use"])
    return f"{r['slots_in_use']}/{r['slots']}"


@click.command()
@url_option
@api_key_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def ps(url: str | None, api_key: str | None, as_json: bool) -> None:
    """The models loaded on the running server, and until when they stay loaded.

    \b
    llmkit ps
    llmkit ps --json
    llmkit ps --url http://127.0.0.1:11434      # an Ollama
    """
    try:
        with _client(url, api_key) as client:
            found = rows(client.running(), datetime.now(UTC))
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("No model is loaded.")
        return
    table = [("NAME", "ENGINE", "SIZE", "CONTEXT", "SLOTS", "QUEUE", "SPECULATIVE", "UNTIL")]
    for r in found:
        name = r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
        table.append((
            name, r["engine"], format_bytes(r["size"]), str(r["context_length"] or "?"),
            _slots(r), "?" if r["queue"] is None else str(r["queue"]),
            r["speculative"] or "-", until(r["expires_in_s"]),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _names(entry: dict[str, Any]) -> set[str]:
    names = {entry.get("name", ""), entry.get("model", "")}
    return names | {n.removesuffix(":latest") for n in names}


@click.command()
@click.argument("model")
@url_option
@api_key_option
def stop(model: str, url: str | None, api_key: str | None) -> None:
    """Unload MODEL from the running server now (its next request loads it again).

    \b
    llmkit stop smol
    """
    want = model.removesuffix(":latest")
    try:
        with _client(url, api_key) as client:
            loaded = [m for m in client.running() if want in _names(m)]
            if not loaded:
                served = client.models()
                if want not in {n.removesuffix(":latest") for n in served}:
                    raise click.ClickException(
                        f"{client.url} serves no model named '{model}'; it serves "
                        f"{', '.join(n.removesuffix(':latest') for n in served) or 'none'}."
                    )
                click.echo(f"{model} is not loaded; nothing to stop.")
                return
            client.unload(loaded[0]["name"])
            still = [m for m in client.running() if want in _names(m)]
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
    if still:
        click.echo(f"{model} is answering a request; it unloads when that ends.")
    else:
        click.echo(f"stopped {model}")
