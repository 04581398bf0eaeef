"""Click options generated from declarations (pydantic fields), so a flag, its help
and its ``LLMKIT_*`` variable are declared once: the server's settings in
``config/settings.py``, each engine's in its ``EngineSpec``."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

import click
from pydantic.fields import FieldInfo


class _Greedy(click.Option):
    """A list option that takes every value up to the next flag, as vLLM's
    ``--served-model-name a b`` does; repeating the flag works too."""

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:
                continue
            original = opt.process

            def process(value: Any, state: Any, _original: Callable = original) -> None:
                values = [value]
                while state.rargs and not state.rargs[0].startswith("-"):
                    values.append(state.rargs.pop(0))
                for v in values:
                    _original(v, state)

            opt.process = process


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(scalar type, is_list) of a field annotation, ignoring Optional and Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def settings_options(
    fields: list[tuple[str, FieldInfo, str]], choices: dict[str, list[str]] | None = None
) -> Callable[[Callable], Callable]:
    """Decorate a command with one ``--flag`` per (name, field, help); unset flags
    arrive as None. ``choices`` limits a flag to the values listed."""

    def decorate(fn: Callable) -> Callable:
        for name, field, description in reversed(fields):
            typ, is_list = _base_type(field.annotation)
            if typing.get_origin(typ) is typing.Literal:
                typ = click.Choice([str(a) for a in typing.get_args(typ)])
            if choices and name in choices:
                typ = click.Choice(choices[name])
            flag = "--" + name.replace("_", "-")
            help_text = f"{description} [env: LLMKIT_{name.upper()}]"
            if typ is bool:
                opt = click.option(flag + "/--no-" + flag[2:], name, default=None, help=help_text)
            elif is_list:
                opt = click.option(
                    flag, name, cls=_Greedy, multiple=True, type=typ, default=None, help=help_text
                )
            else:
                opt = click.option(flag, name, type=typ, default=None, help=help_text)
            fn = opt(fn)
        return fn

    return decorate


def given(values: dict[str, Any]) -> dict[str, Any]:
    """Only the flags the user typed, so environment and defaults fill the rest."""
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in values.items()
        if v not in (None, ())
    }
