"""What ``llmkit run MODEL [PROMPT]`` does, as ``ollama run`` does it.

With a running server (``--url``, ``LLMKIT_URL``, or the local ``llmkit serve``),
the model runs there: when the server has not got it, the server pulls it
(``POST /api/pull``, its progress shown here on stderr), and the first request
loads it. Without one, the model is pulled here when it is not in the local
catalog, and served in this process for as long as the command runs.

Then either the interactive chat, or, given PROMPT (or text piped on stdin),
one answer printed as it comes, plainly (no Markdown, no prompts), for scripts;
with ``--session`` or ``--continue`` that answer is kept in the conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from llmkit.cli.terminal import ChatOptions
from llmkit.client.http import Client
from llmkit.client.local import local_server
from llmkit.client.manage import ModelManager, PullLine
from llmkit.core.types import Message
from llmkit.env import Environment
from llmkit.memory.chat import Chat
from llmkit.memory.images import as_image

Talk = Callable[[ChatOptions], None]
#: The conversation to keep a one-shot answer in (None: keep it nowhere).
Stored = Callable[[ChatOptions], Chat] | None


def run_model(
    opts: ChatOptions,
    text: str | None,
    url: str | None,
    env: Environment,
    talk: Talk,
    stored: Stored = None,
) -> None:
    server = url or (found.url if (found := local_server(env)) else None)
    if server is not None:
        if opts.model:
            with ModelManager(server, api_key=opts.api_key) as manager:
                if not manager.has(opts.model):
                    manager.pull(opts.model, ServerPullView(opts.model))
        _finish(replace(opts, url=server, dialect=None), text, talk, stored)
        return
    _in_process(opts, text, env, talk, stored)


def _in_process(
    opts: ChatOptions, text: str | None, env: Environment, talk: Talk, stored: Stored = None
) -> None:
    from llmkit.cli.progress import load_progress
    from llmkit.config.settings import ServeSettings
    from llmkit.engines.spec import load_specs
    from llmkit.serving.server import serving_in_thread

    name = _local_name(opts.model, env) if opts.model else None
    settings = ServeSettings(
        model=[name] if name else [], port=0, log_level="warning", options={"parallel": 1}
    )
    with serving_in_thread(settings, load_specs(), env, on_progress=load_progress()) as url:
        _finish(
            replace(opts, url=url, model=None, api_key=None, dialect="openai"), text, talk, stored
        )


def _local_name(name: str, env: Environment) -> str:
    """``name`` as this machine's catalog knows it, pulled first when it is not there."""
    from llmkit.cli.views import PullView
    from llmkit.models.catalog import Catalog
    from llmkit.models.download import pull
    from llmkit.models.hf_names import to_pull_request
    from llmkit.models.quiet import quiet_libraries

    if Path(name).expanduser().exists():
        return name
    models = env.models()
    catalog = Catalog(models.models_dir)
    entry = catalog.lookup(name)
    if entry is None or not entry.complete:
        view = PullView(name)
        try:
            # As `pull --fit`: the largest quantisation that fits, refused before any byte moves.
            with quiet_libraries():
                pull(to_pull_request(name), models, view, fit=True)
        finally:
            view.close()
        entry = catalog.lookup(name)
    return entry.name if entry is not None else name


def _finish(opts: ChatOptions, text: str | None, talk: Talk, stored: Stored) -> None:
    if text is None:
        talk(opts)
        return
    if stored is not None:
        chat = stored(opts)
        try:
            for piece in chat.stream(text, images=opts.images):
                click.echo(piece, nl=False)
        finally:
            chat.close()
        click.echo()
        return
    assert opts.url is not None
    with Client(opts.url, api_key=opts.api_key, dialect=opts.dialect) as client:  # type: ignore[arg-type]
        model = opts.model or client.models()[0]
        messages = [Message("system", opts.system)] if opts.system else []
        images = tuple(as_image(p, p) for p in opts.images)
        chunks = client.stream_chat(
            model,
            [*messages, Message("user", text, images=images)],
            max_tokens=opts.max_tokens,
            temperature=opts.temperature,
            think=opts.think,
        )
        for chunk in chunks:  # the answer only: a one-shot prints what a script wants
            click.echo(chunk.text, nl=False)
    click.echo()


class ServerPullView:
    """A server's pull lines on stderr: each step once, each file by tenths."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.said: set[str] = set()

    def __call__(self, line: PullLine) -> None:
        status = str(line.get("status", ""))
        total, done = line.get("total"), line.get("completed")
        if total and done is not None:
            tenth = int(10 * done / total) if total else 10
            key = f"{status} {tenth}"
            if key not in self.said:
                self.said.add(key)
                click.echo(f"{status}: {tenth * 10}%", err=True)
            return
        if status not in self.said:
            self.said.add(status)
            click.echo(status, err=True)
