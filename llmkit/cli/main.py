"""The ``llmkit`` command: one click group; each command parses its flags into a
settings object and hands it to the layer that does the work.

``serve``'s flags come from the registered engines, so that command is built when
it is first asked for (``--help`` or a run), not when this module is imported:
engine plugins load then, never at import time.
"""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from llmkit.cli.options import given, settings_options
from llmkit.env import Environment
from llmkit.errors import LlmkitError
from llmkit.version import __version__

SERVE_EXAMPLES = """Serve models behind the OpenAI API (/v1) and the Ollama API (/api).

\b
llmkit serve                                   # the bundled SmolLM2-135M
llmkit serve --model ./qwen2-0_5b.Q4_K_M.gguf --served-model-name qwen small
llmkit serve --host 0.0.0.0 --port 8000 --api-key sk-local --max-model-len 4096
llmkit serve --engine transformers --model Qwen/Qwen2-0.5B-Instruct --device cuda
llmkit serve --engine vllm --model meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 2
llmkit serve --upstream ollama://127.0.0.1:11434   # every model of a running Ollama
llmkit serve --config models.yaml              # several models, each on its engine
"""


class _Cli(click.Group):
    """Builds ``serve`` on demand, from the engines registered at that moment."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "serve"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "serve":
            return make_serve()
        return super().get_command(ctx, name)


@click.group(cls=_Cli)
@click.version_option(__version__, prog_name="llmkit")
def cli() -> None:
    """Get, size, serve and chat with local LLMs."""


def make_serve() -> click.Command:
    from llmkit.config.settings import flag_fields
    from llmkit.engines.spec import load_specs

    specs = load_specs()
    engines = [n for s in specs for n in (s.name, *s.aliases)]

    @click.command(name="serve", help=SERVE_EXAMPLES)
    @settings_options(flag_fields(specs), choices={"engine": engines})
    def serve(**flags: object) -> None:
        from llmkit.config.settings import load_serve_settings

        env = Environment.read()
        try:
            settings = load_serve_settings(given(flags), env, specs)
        except ValidationError as e:
            raise click.UsageError(_settings_error(e)) from None
        except LlmkitError as e:  # the config file, the engine's name
            raise click.ClickException(e.message) from None
        from llmkit.serving.logs import install

        install(settings.log_level)
        from llmkit.cli.progress import load_progress
        from llmkit.serving.server import serve as run  # the engines load only when serving

        try:
            run(settings, specs, env, on_progress=load_progress())
        except LlmkitError as e:
            raise click.ClickException(e.message) from None

    return serve


def _settings_error(e: ValidationError) -> str:
    def one(err: Any) -> str:
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across several flags
            return msg
        return f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {msg}"

    return "; ".join(one(err) for err in e.errors())


# The other commands live in their own modules; registered here so `llmkit --help` lists them.
from llmkit.cli.models import list_models, mem, pull, rm, show  # noqa: E402

for _command in (pull, list_models, show, rm, mem):
    cli.add_command(_command)

from llmkit.cli.chat import chat, run  # noqa: E402
from llmkit.cli.sessions import sessions  # noqa: E402

for _command in (chat, run, sessions):
    cli.add_command(_command)

from llmkit.cli.doctor import doctor  # noqa: E402
from llmkit.cli.running import ps, stop  # noqa: E402

for _command in (ps, stop, doctor):
    cli.add_command(_command)

from llmkit.cli.create import create  # noqa: E402

cli.add_command(create)
