"""``llmkit sessions``: the stored conversations, whichever way they were made
(terminal, Python, LangChain)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from llmkit.env import Environment
from llmkit.errors import ConversationNotFoundError, LlmkitError
from llmkit.memory.chat import open_store
from llmkit.memory.store import Store


def _with_store(fn: Callable[..., None]) -> Callable[..., None]:
    @click.option(
        "--store",
        "store_url",
        help="SQLAlchemy URL of the store (default: SQLite in the data directory). "
        "[env: LLMKIT_STORE]",
    )
    @wraps(fn)
    def wrapper(store_url: str | None, **kw: Any) -> None:
        try:
            with open_store(store_url, Environment.read()) as store:
                fn(store, **kw)
        except LlmkitError as e:
            raise click.ClickException(e.message) from None

    return wrapper


@click.group()
def sessions() -> None:
    """List, show, export, import, rename, remove and search conversations."""


@sessions.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per conversation.")
@_with_store
def list_(store: Store, as_json: bool) -> None:
    """Every conversation, last used first."""
    convs = store.list()
    if as_json:
        rows = [
            {
                "name": c.name,
                "id": c.id,  # OpenAI's /v1/conversations id
                "model": c.model,
                "turns": c.turns,
                "memory": c.memory,
                "last_used": c.updated_at.isoformat(),
            }
            for c in convs
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not convs:
        click.echo("No conversations yet; `llmkit chat` starts one.")
        return
    table = Table("name", "model", "turns", "memory", "last used", box=None)
    for c in convs:
        when = c.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
        table.add_row(c.name, c.model or "", str(c.turns), c.memory, when)
    Console().print(table)


@sessions.command()
@click.argument("name")
@_with_store
def show(store: Store, name: str) -> None:
    """The whole transcript. NAME: a name, or an id of /v1/conversations (conv_...)."""
    with contextlib.suppress(ConversationNotFoundError):  # then to_markdown's error says it
        name = store.conversation(name).name
    text = store.to_markdown(name)
    console = Console()
    console.print(Markdown(text) if console.is_terminal else text, highlight=False)


@sessions.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["json", "markdown"]), default="json")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@_with_store
def export(store: Store, name: str, fmt: str, output: Path | None) -> None:
    """Write a conversation as JSON (importable) or Markdown."""
    if fmt == "json":
        text = json.dumps(store.export(name), ensure_ascii=False, indent=2)
    else:
        text = store.to_markdown(name)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@sessions.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Store it under this name instead.")
@_with_store
def import_(store: Store, file: Path, name: str | None) -> None:
    """Read a conversation exported as JSON."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise click.ClickException(f"{file} is not JSON: {e}") from None
    conv = store.import_(data, name=name)
    click.echo(f"imported {conv.name} ({conv.turns} turns)")


@sessions.command()
@click.argument("old")
@click.argument("new")
@_with_store
def rename(store: Store, old: str, new: str) -> None:
    """Give a conversation another name."""
    store.rename(old, new)
    click.echo(f"renamed {old} to {new}")


@sessions.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Don't ask.")
@_with_store
def rm(store: Store, name: str, yes: bool) -> None:
    """Delete a conversation."""
    conv = store.get(name)
    if not yes:
        click.confirm(f"Delete {name} ({conv.turns} turns)?", abort=True)
    store.delete(name)
    click.echo(f"deleted {name}")


@sessions.command()
@click.argument("text")
@_with_store
def search(store: Store, text: str) -> None:
    """Messages containing TEXT (case-insensitive), in every conversation."""
    hits = store.search(text)
    if not hits:
        click.echo(f"No message contains '{text}'.")
        return
    for name, entry in hits:
        snippet = entry.content.replace("\n", " ")
        i = snippet.lower().find(text.lower())
        start = max(0, i - 40)
        click.echo(f"{name} [{entry.role}] …{snippet[start : i + len(text) + 40]}…")
