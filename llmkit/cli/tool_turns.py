"""``llmkit chat``'s turns with MCP tools: the server runs the tools (its ``--mcp``
servers); the terminal prints each call (name, arguments), its result (folded
to a few lines), and asks y/n where a call waits for the user's approval."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click
from rich.console import Console

from llmkit.client.tools import Event, ToolTurns

FOLD = 300  # characters of a result shown; the rest is counted, not printed


def fold(text: str, limit: int = FOLD) -> str:
    lines = text.strip().splitlines() or [""]
    short = "\n  ".join(lines[:4])
    if len(short) > limit:
        short = short[:limit]
    hidden = len(text.strip()) - len(short.replace("\n  ", "\n"))
    return short + (f" ... ({hidden} more characters)" if hidden > 0 else "")


def _arguments(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except ValueError:
        return raw


def run_turn(console: Console, turns: ToolTurns, name: str, events: Iterator[Event]) -> None:
    """Print a turn's events; answer its approval requests by asking, until it ends."""
    while True:
        asked: list[dict] = []
        answering = False
        for kind, data in events:
            if kind == "delta":
                answering = True
                console.out(data["text"], end="", highlight=False)
            elif kind in ("tool_call", "approval", "tool_result", "done", "error") and answering:
                console.out("")
                answering = False
            if kind == "tool_call":
                where = f"{data['server']}." if data.get("server") else ""
                args = _arguments(data["arguments"])
                console.print("[cyan]tool call[/cyan] ", end="")
                console.out(f"{where}{data['name']}({args})", highlight=False)
            elif kind == "approval":
                asked.append(data)
            elif kind == "tool_result":
                style = "red" if data["error"] else "green"
                label = "tool error" if data["error"] else "tool result"
                console.print(f"[{style}]{label}[/{style}] {data['name']}: ", end="")
                console.out(fold(data["output"]), highlight=False)
            elif kind == "error":
                console.print(f"[red]error:[/red] {data['error']['message']}")
            elif kind == "done" and data.get("finish_reason") == "max_tool_steps":
                console.print("[yellow]stopped: the server's tool step limit was reached[/yellow]")
        if not asked:
            return
        # Each waiting call is answered in turn; the last answer carries the turn on.
        for i, call in enumerate(asked):
            yes = click.confirm(
                f"Run {call['server']}.{call['name']}({_arguments(call['arguments'])})?",
                default=False,
            )
            stream = turns.approve(name, call["id"], yes)
            if i < len(asked) - 1:
                for _ in stream:
                    pass
            else:
                events = stream
