"""``llmkit doctor``: one line per thing llmkit depends on (the llama.cpp build,
memory, its directories, the conversation store, a running server, the hubs),
each with a mark, and with what to do when it is wrong. Exits 1 when a check
fails, so a script or CI can gate on it."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from pydantic import ValidationError

from llmkit.cli.checks import CHECKS, MARKS, Check, server
from llmkit.env import Environment


@click.command()
@click.option("--url", help="Check this server instead of the local llmkit serve.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def doctor(url: str | None, as_json: bool) -> None:
    """Check this machine's llmkit set-up and say what to fix.

    \b
    llmkit doctor
    llmkit doctor --url http://127.0.0.1:8000
    """
    env = Environment.read()
    try:
        models = env.models()
    except ValidationError as e:
        raise click.UsageError(str(e.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    checks: list[Check] = []
    for run in CHECKS:
        checks.extend(run(env, models))
        if run.__name__ == "store":  # the server next, before the hubs (the slow ones)
            checks.extend(server(env, models, url or env.url))
    failed = sum(c.status == "fail" for c in checks)
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            click.echo(f"{MARKS[c.status]} {c.name.ljust(width)}  {c.detail}")
            if c.advice:
                click.echo(f"  {' ' * width}  → {c.advice}")
        click.echo(f"{failed} check(s) failed." if failed else "All checks passed.")
    if failed:
        raise SystemExit(1)
