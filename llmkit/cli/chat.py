"""``llmkit chat`` (talk to a running server) and ``llmkit run`` (serve the model
in this process and talk to it)."""

from __future__ import annotations

import sys

import click

from llmkit.cli.terminal import THINK, ChatOptions, Terminal, chat_options
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
        think=opts.think,
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
    type=click.Choice(["openai", "ollama", "anthropic"]),
    help="The server's API (default: found by asking it; Anthropic's is never found, only named).",
)
@click.option(
    "--mcp",
    "mcp",
    multiple=True,
    metavar="NAME",
    help="Let the model use the tools of this MCP server of the llmkit server (its "
    "--mcp NAME=...); repeatable. The server runs them; calls that need approval ask y/n.",
)
@chat_options
def chat(
    url: str | None,
    api_key: str | None,
    dialect: str | None,
    mcp: tuple[str, ...],
    model: str | None,
    system: str | None,
    memory: str | None,
    session: str | None,
    resume: bool,
    max_tokens: int | None,
    temperature: float | None,
    plain: bool,
    think: str | None,
    hide_thinking: bool,
) -> None:
    """Chat in the terminal, with memory, against any server.

    \b
    llmkit chat                                 # the local llmkit serve
    llmkit chat --session work --memory tokens  # a named conversation, fitted to the context
    llmkit chat --continue                      # resume the last conversation
    llmkit chat --url http://127.0.0.1:11434 --model llama3.2   # an Ollama
    llmkit chat --url https://api.openai.com --api-key $KEY --model gpt-4o-mini
    llmkit chat --mcp files                     # the server's MCP server 'files'
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
        THINK[think] if think else None,
        not hide_thinking,
        mcp,
    )
    try:
        Terminal(_open_chat(opts, session, resume, env), opts, env=env).run()
    except LlmkitError as e:
        raise click.ClickException(e.message) from None


@click.command()
@click.argument("model_arg", metavar="[MODEL]", required=False)
@click.argument("prompt", nargs=-1)
@click.option(
    "--url",
    help="The llmkit serve to run the model on (default: the local one, when one is "
    "running; else the model is served in this process). [env: LLMKIT_URL]",
)
@click.option("--api-key", help="Bearer key for the server. [env: LLMKIT_API_KEY]")
@click.option("--serve-model", "model_path", hidden=True)  # before MODEL was an argument
@chat_options
def run(
    model_arg: str | None,
    prompt: tuple[str, ...],
    url: str | None,
    api_key: str | None,
    model_path: str | None,
    model: str | None,
    system: str | None,
    memory: str | None,
    session: str | None,
    resume: bool,
    max_tokens: int | None,
    temperature: float | None,
    plain: bool,
    think: str | None,
    hide_thinking: bool,
) -> None:
    """Run MODEL: chat with it, or answer PROMPT (or what stdin pipes in) and exit.

    With a running `llmkit serve` (the local one, or --url), the model runs
    there: pulled there first when it has not got it, then loaded on first use.
    Without one, it is pulled here when needed and served in this process.

    \b
    llmkit run                                  # the bundled SmolLM2-135M
    llmkit run qwen2-0.5b-instruct-gguf         # pulled first if need be
    llmkit run SmolLM2-135M-Instruct "Name three colours."   # one answer, plainly
    cat notes.txt | llmkit run SmolLM2-135M-Instruct "Summarise:"  # PROMPT, then stdin
    llmkit run --session notes --memory summary
    """
    from llmkit.cli.run_model import run_model

    env = Environment.read()
    text = " ".join(prompt) or None
    stdin = sys.stdin  # click's CliRunner swaps it too
    # Piped: the prompt, or what follows it (as ollama run does).
    if stdin is not None and not stdin.isatty():
        piped = stdin.read().strip()
        text = "\n\n".join(t for t in (text, piped) if t) or None
    opts = ChatOptions(
        None,
        model_arg or model or model_path,
        api_key or env.api_key,
        "openai",
        system,
        memory,
        max_tokens,
        temperature,
        not plain,
        THINK[think] if think else None,
        not hide_thinking,
    )
    try:
        stored = (lambda o: _open_chat(o, session, resume, env)) if session or resume else None
        run_model(opts, text, url or env.url, env, lambda o: _talk(o, session, resume, env), stored)
    except LlmkitError as e:
        raise click.ClickException(e.message) from None


def _talk(opts: ChatOptions, session: str | None, resume: bool, env: Environment) -> None:
    Terminal(_open_chat(opts, session, resume, env), opts, env=env).run()
