"""The ``llmkit`` command: one click group; each command parses its flags into a
settings object and hands it to the layer that does the work."""

from __future__ import annotations

import logging
from typing import Any

import click
from pydantic import ValidationError

from llmkit import __version__
from llmkit.cli.options import given, settings_options
from llmkit.cli.progress import load_progress
from llmkit.errors import LlmkitError
from llmkit.settings import ServeSettings


@click.group()
@click.version_option(__version__, prog_name="llmkit")
def cli() -> None:
    """Get, size, serve and chat with local LLMs."""


@cli.command()
@settings_options(ServeSettings)
def serve(**flags: object) -> None:
    """Serve models behind the OpenAI API (/v1) and the Ollama API (/api).

    \b
    llmkit serve                                   # the bundled SmolLM2-135M
    llmkit serve --model ./qwen2-0_5b.Q4_K_M.gguf --served-model-name qwen small
    llmkit serve --host 0.0.0.0 --port 8000 --api-key sk-local --max-model-len 4096
    llmkit serve --engine transformers --model Qwen/Qwen2-0.5B-Instruct --device cuda
    llmkit serve --engine vllm --model meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 2
    llmkit serve --upstream ollama://127.0.0.1:11434   # every model of a running Ollama
    llmkit serve --config models.yaml              # several models, each on its engine
    """
    try:
        settings = ServeSettings(**given(flags))
    except ValidationError as e:
        raise click.UsageError(_settings_error(e)) from None
    except LlmkitError as e:  # the config file
        raise click.ClickException(e.message) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)-7s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: one line per call to an upstream or a vLLM.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from llmkit.server import serve as run  # the engines load only when serving

    try:
        run(settings, on_progress=load_progress())
    except LlmkitError as e:
        raise click.ClickException(e.message) from None


def _settings_error(e: ValidationError) -> str:
    def one(err: Any) -> str:
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across several flags
            return msg
        return f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {msg}"

    return "; ".join(one(err) for err in e.errors())


# The model commands live in their own module; registered here so `llmkit --help` lists them.
from llmkit.cli.models import list_models, mem, pull, rm, show  # noqa: E402

for _command in (pull, list_models, show, rm, mem):
    cli.add_command(_command)

from llmkit.cli.chat import chat, run  # noqa: E402
from llmkit.cli.sessions import sessions  # noqa: E402

for _command in (chat, run, sessions):
    cli.add_command(_command)
