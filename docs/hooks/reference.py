"""MkDocs hook: the reference pages' generated parts, rendered from the code at build
time so the docs cannot drift from it.

A page asks for a part with a marker on a line of its own:

- ``<!-- llmkit:cli NAME -->``: ``llmkit NAME --help`` (a group: every subcommand's too);
  ``<!-- llmkit:cli -->``: ``llmkit --help``;
- ``<!-- llmkit:serve-flags -->``: every ``llmkit serve`` flag, its variable, default and help,
  from the serve settings and the built-in engines' declarations;
- ``<!-- llmkit:variables -->``: every environment variable llmkit reads (``llmkit/env.py``)
  and the ``LLMKIT_*`` of each serve flag;
- ``<!-- llmkit:families -->``: the model families llmkit knows (``engines/families/table.py``):
  how each is recognised, how it thinks and how thinking is switched, how it opens a call.

An unknown marker fails the build. The tests import ``render`` from here to check the
pages' coverage without running MkDocs.
"""

from __future__ import annotations

import re
from typing import Any

import click

# Where the serve settings live: the one import to change if they move.
from llmkit.config.settings import flag_fields

MARKER = re.compile(r"^<!-- llmkit:([a-z-]+)(?: ([a-z-]+))? -->$", flags=re.M)
WIDTH = 100


def _cli() -> click.Group:
    from llmkit.cli.main import cli

    return cli


def _specs() -> Any:
    from llmkit.engines.spec import load_specs

    return load_specs(plugins=False)  # the built-in engines only: not what happens to be installed


def commands() -> list[str]:
    """The top-level ``llmkit`` commands, each of which has a reference page."""
    cli = _cli()
    with click.Context(cli, info_name="llmkit") as ctx:
        return cli.list_commands(ctx)


def cli_help(name: str) -> str:
    """``llmkit NAME --help``, and each subcommand's for a group."""
    cli = _cli()
    root = click.Context(cli, info_name="llmkit", terminal_width=WIDTH, max_content_width=WIDTH)
    command = cli.get_command(root, name)
    if command is None:
        raise KeyError(f"no command llmkit {name}")
    ctx = click.Context(command, info_name=name, parent=root, max_content_width=WIDTH)
    parts = [f"$ llmkit {name} --help\n{command.get_help(ctx)}"]
    if isinstance(command, click.Group):
        for sub in command.list_commands(ctx):
            sub_cmd = command.get_command(ctx, sub)
            assert sub_cmd is not None
            sub_ctx = click.Context(sub_cmd, info_name=sub, parent=ctx, max_content_width=WIDTH)
            parts.append(f"$ llmkit {name} {sub} --help\n{sub_cmd.get_help(sub_ctx)}")
    body = "\n\n".join(parts)
    return f"```text\n{body}\n```"


def root_help() -> str:
    """``llmkit --help``."""
    cli = _cli()
    ctx = click.Context(cli, info_name="llmkit", terminal_width=WIDTH, max_content_width=WIDTH)
    return f"```text\n$ llmkit --help\n{cli.get_help(ctx)}\n```"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
    else:
        value = info.default
    if value in (None, [], {}, ""):
        return ""
    if value is False:
        return "off"
    if value is True:
        return "on"
    return f"`{value}`"


def serve_flags() -> list[tuple[str, str, str, str]]:
    """(flag, variable, default, help) of every ``llmkit serve`` setting."""
    return [
        (
            "--" + name.replace("_", "-"),
            f"LLMKIT_{name.upper()}",
            _default(info),
            help_text,
        )
        for name, info, help_text in flag_fields(_specs())
    ]


def serve_flags_table() -> str:
    rows = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for flag, var, default, help_text in serve_flags():
        rows.append(f"| `{flag}` | `{var}` | {default} | {_cell(help_text)} |")
    return "\n".join(rows)


def variables() -> list[tuple[str, str]]:
    """(name, meaning) of every environment variable: the shared ones, then serve's."""
    from llmkit.env import VARIABLES

    shared = [(v.name, v.description) for v in VARIABLES]
    known = {name for name, _ in shared}
    serve = [
        (var, f"`llmkit serve {flag}`: {help_text}")
        for flag, var, _default, help_text in serve_flags()
        if var not in known
    ]
    return shared + serve


def variables_table() -> str:
    rows = ["| variable | meaning |", "|---|---|"]
    rows += [f"| `{name}` | {_cell(text)} |" for name, text in variables()]
    return "\n".join(rows)


def _code(texts: tuple[str, ...] | list[str]) -> str:
    # Python-Markdown splits no cell at a pipe inside a code span: none is escaped.
    # A newline a marker holds is shown as the two characters a template writes.
    return ", ".join("`" + t.replace("\n", "\\n") + "`" for t in texts)


def families_table() -> str:
    """One row per family of the table, in the order detection tries them."""
    from llmkit.engines.families.table import GENERIC, ROWS

    rows = [
        "| family | its template holds | thinking | switched by | a call opens with |",
        "|---|---|---|---|---|",
    ]
    for row in (*ROWS, GENERIC):
        found = _code(row.has) if row.has else "(no other family matched)"
        if row.any_of:
            found += " and one of " + _code(row.any_of)
        thinking = _code(row.think) if row.think else ("channels" if row.thinks else "no")
        switch = _code([v for v in (row.switch, row.effort) if v]) or "—"
        opens = _code([*getattr(row.syntax, "opens", ()), *row.syntax.triggers])
        rows.append(f"| {row.name} | {found} | {thinking} | {switch} | {opens} |")
    return "\n".join(rows)


def render(kind: str, arg: str | None = None) -> str:
    """The Markdown a marker stands for."""
    if kind == "cli":
        return cli_help(arg) if arg else root_help()
    if kind == "serve-flags":
        return serve_flags_table()
    if kind == "variables":
        return variables_table()
    if kind == "families":
        return families_table()
    raise ValueError(f"unknown marker llmkit:{kind}")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return MARKER.sub(lambda m: render(m.group(1), m.group(2)), markdown)
