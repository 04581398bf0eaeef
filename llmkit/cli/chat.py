"""``llmkit chat`` (talk to a running server) and ``llmkit run`` (serve the model
in this process and talk to it)."""

from __future__ import annotations

import click

from llmkit.cli.terminal import ChatOptions, Terminal, chat_options
from llmkit.errors import LlmkitError
from llmkit.memory.chat import Chat, open_store


def _open_chat(opts: ChatOptions, session: str | None, resume: bool) -> Chat:
    store = open_store(None)
    if resume and session is None:
        last = store.last()
        if last is None:
            raise click.ClickException("There is no conversation to continue yet.")
        session = last.name
    return Chat(
        url=opts.url,
        model=opts.model,
        system=opts.system,
        memory=opts.memory,
        session=session,
        api_key=opts.api_key,
        dialect=opts.dialect,  # type: ignore[arg-type]
        max_tokens=opts.max_tokens,
        temperature=opts.temperature,
        store=store,
    )


@click.command()
@click.option(
    "--url",
    envvar="LLMKIT_URL",
    help="Server to talk to: llmkit, vLLM, Ollama or any OpenAI-style API "
    "(default: the local llmkit serve). Env: LLMKIT_URL.",
)
@click.option("--api-key", envvar="LLMKIT_API_KEY", help="Bearer key for the server.")
@click.option(
    "--dialect",
    type=click.Choice(["openai", "ollama"]),
    help="The server's API (default: found by asking it).",
)
@chat_options
def chat(
    url: str | None,
    api_key: str | None,
    dialect: str | None,
    model: str | None,
    system: str | None,
    memory: str | None,
    session: str | None,
    resume: bool,
    max_tokens: int | None,
    temperature: float | None,
    plain: bool,
) -> None:
    """Chat in the terminal, with memory, against any server.

    \b
    llmkit chat                                 # the local llmkit serve
    llmkit chat --session work --memory tokens  # a named conversation, fitted to the context
    llmkit chat --continue                      # resume the last conversation
    llmkit chat --url http://127.0.0.1:11434 --model llama3.2   # an Ollama
    llmkit chat --url https://api.openai.com --api-key $KEY --model gpt-4o-mini
    """
    opts = ChatOptions(
        url, model, api_key, dialect, system, memory, max_tokens, temperature, not plain
    )
    try:
        Terminal(_open_chat(opts, session, resume), opts).run()
    except LlmkitError as e:
        raise click.ClickException(e.message) from None


@click.command()
@click.option(
    "--serve-model",
    "model_path",
    help="A model to load (catalog name, repo id, .gguf; default: the bundled one).",
)
@chat_options
def run(
    model_path: str | None,
    model: str | None,
    system: str | None,
    memory: str | None,
    session: str | None,
    resume: bool,
    max_tokens: int | None,
    temperature: float | None,
    plain: bool,
) -> None:
    """Load a model in this process and chat with it (no separate server).

    \b
    llmkit run                      # the bundled SmolLM2-135M
    llmkit run --session notes --memory summary
    """
    from llmkit.cli.progress import load_progress
    from llmkit.server import serving_in_thread
    from llmkit.settings import ServeSettings

    settings = ServeSettings(model=model_path, parallel=1, port=0, log_level="warning")
    try:
        with serving_in_thread(settings, on_progress=load_progress()) as url:
            opts = ChatOptions(
                url, model, None, "openai", system, memory, max_tokens, temperature, not plain
            )
            Terminal(_open_chat(opts, session, resume), opts).run()
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
