"""``llmkit chat`` (talk to a running server) and ``llmkit run`` (serve the model
in this process and talk to it)."""

from __future__ import annotations

import click

from llmkit.cli.terminal import ChatOptions, Terminal, chat_options
from llmkit.env import Environment
from llmkit.errors import LlmkitError
from llmkit.memory.chat import Chat, open_store


def _open_chat(opts: ChatOptions, session: str | None, resume: bool, env: Environment) -> Chat:
    # The same store as `llmkit sessions` and Chat(): LLMKIT_STORE, else the data directory's.
    store = open_store(None, env)
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
        env=env,
    )


@click.command()
@click.option(
    "--url",
    help="Server to talk to: llmkit, vLLM, Ollama or any OpenAI-style API "
    "(default: the local llmkit serve). [env: LLMKIT_URL]",
)
@click.option("--api-key", help="Bearer key for the server. [env: LLMKIT_API_KEY]")
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
    env = Environment.read()
    opts = ChatOptions(
        url or env.url,
        model,
        api_key or env.api_key,
        dialect,
        system,
        memory,
        max_tokens,
        temperature,
        not plain,
    )
    try:
        Terminal(_open_chat(opts, session, resume, env), opts, env=env).run()
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
    from llmkit.engines.spec import load_specs
    from llmkit.serving.server import serving_in_thread
    from llmkit.serving.settings import ServeSettings

    env = Environment.read()
    settings = ServeSettings(
        model=[model_path] if model_path else [],
        port=0,
        log_level="warning",
        options={"parallel": 1},
    )
    try:
        with serving_in_thread(settings, load_specs(), env, on_progress=load_progress()) as url:
            opts = ChatOptions(
                url, model, None, "openai", system, memory, max_tokens, temperature, not plain
            )
            Terminal(_open_chat(opts, session, resume, env), opts, env=env).run()
    except LlmkitError as e:
        raise click.ClickException(e.message) from None
