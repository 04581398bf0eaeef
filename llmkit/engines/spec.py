"""What an engine package declares so that llmkit can serve it, and how the
declared engines are found.

Each engine package (``engines/llamacpp``, ``engines/transformers``, ...) has a
``spec.py`` with one ``EngineSpec``: its name and aliases, its ``Options`` model
(the only place its settings are declared; their descriptions are the flags'
help), how to check that a model fits before anything loads, how to build the
engine, and, if it has anything to report, its lines in ``llmkit doctor`` (its
build, its libraries: ``Check``), so the command line asks the spec and never
reaches into an engine package. ``llmkit serve``'s flags, ``LLMKIT_*`` variables
and config-file keys are generated from the registered specs
(``llmkit.config.settings``).

Engines from other packages register through the ``llmkit.engines`` entry-point
group, as simonw/llm's and pytest's plugins do::

    [project.entry-points."llmkit.engines"]
    toy = "toy_engine:SPEC"

The group is read when specs are first asked for, never at import time, so a
test can register an engine of its own first.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from llmkit.core.types import EngineInfo
from llmkit.engines.base import Engine
from llmkit.env import ModelsSettings
from llmkit.errors import ConfigError
from llmkit.models.modelfile import Modelfile

log = logging.getLogger("llmkit.engines")

ENTRY_POINT_GROUP = "llmkit.engines"
Status = Literal["ok", "warn", "fail", "info"]
BUILTIN = (
    "llmkit.engines.llamacpp.spec:SPEC",
    "llmkit.engines.transformers.spec:SPEC",
    "llmkit.engines.vllm.spec:SPEC",
    "llmkit.engines.upstream.spec:SPEC",
)


@dataclass(frozen=True)
class BuildContext:
    """What building an engine for one served model needs besides its options."""

    model: str | None  # what the entry names; None: the engine's default
    served_names: tuple[str, ...] = ()  # the names the user gave, if any
    models: ModelsSettings = field(default_factory=ModelsSettings)
    on_progress: Callable[[float], None] | None = None
    where: str = ""  # how to name the entry in an error: "models.yaml, model 2: "
    environ: dict[str, str] = field(default_factory=dict)  # for child processes


@dataclass(frozen=True)
class Built:
    """One model an engine serves: its default name, what listings show of it
    before it first loads, and its defaults (the catalog entry's Modelfile)."""

    name: str
    engine: Engine
    describe: EngineInfo | None = None
    created: int = 0  # the model file's mtime, for listings
    modelfile: Modelfile | None = None  # applied to each request by the served model
    # A LoRA adapter served under its own name: the served model whose weights it
    # shares (its name is its own, never the entry's --served-model-name).
    base: str | None = None


@dataclass(frozen=True)
class Check:
    """One line of ``llmkit doctor``: what was found and, when something is wrong,
    what to do about it."""

    status: Status
    name: str
    detail: str
    advice: str = ""  # what to do, when the status is warn or fail


@dataclass(frozen=True)
class EngineSpec:
    name: str
    summary: str  # one line for --engine's help
    options: type[BaseModel]  # extra="forbid"; one field per setting, with a description
    # (context, options, what fit returned) -> the served models; nothing loads yet
    build: Callable[[BuildContext, Any, Any], list[Built]]
    # (context, options) -> what build needs to size the engine (the context length
    # chosen); raises InsufficientMemoryError with the numbers when it cannot fit
    fit: Callable[[BuildContext, Any], Any] | None = None
    aliases: tuple[str, ...] = ()
    # An option whose presence alone selects this engine (``--upstream URL``).
    implied_by: str | None = None
    # () -> this engine's lines in ``llmkit doctor`` (how its library was built);
    # quick, loads no model, and reports a missing library as a failed check.
    doctor: Callable[[], list[Check]] | None = None

    def validate(self, values: dict[str, Any], *, where: str = "") -> Any:
        """The engine's options from ``values``, or a ConfigError naming what is wrong
        (as flags on the command line, as keys in a config file)."""
        try:
            return self.options.model_validate(values)
        except ValidationError as e:
            flag = (lambda k: k) if where else (lambda k: "--" + k.replace("_", "-"))
            takes = ", ".join(flag(k) for k in self.options.model_fields)
            problems = []
            for err in e.errors():
                key = str(err["loc"][0]) if err["loc"] else ""
                if err["type"] == "extra_forbidden":
                    problems.append(f"{flag(key)} does not apply to the {self.name} engine")
                elif err["type"] == "missing":
                    problems.append(f"the {self.name} engine needs {flag(key)}")
                else:
                    msg = str(err["msg"]).removeprefix("Value error, ")
                    problems.append(f"{flag(key)}: {msg}" if key else msg)
            raise ConfigError(
                f"{where}{'; '.join(problems)} (it takes: {takes or 'no options'})."
            ) from None


@dataclass(frozen=True)
class OptionField:
    """A setting some engines take: its declaration and which engines take it."""

    name: str
    info: FieldInfo
    engines: tuple[str, ...]

    @property
    def description(self) -> str:
        return f"{self.info.description or ''} [{', '.join(self.engines)}]".strip()


class EngineSpecs:
    """The registered engines, by name and alias."""

    def __init__(self, specs: Iterable[EngineSpec]) -> None:
        self._specs: dict[str, EngineSpec] = {}
        self._aliases: dict[str, str] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: EngineSpec) -> None:
        taken = {spec.name, *spec.aliases} & (set(self._specs) | set(self._aliases))
        if taken:
            log.warning("engine %s ignored: %s already registered", spec.name, ", ".join(taken))
            return
        self._specs[spec.name] = spec
        for alias in spec.aliases:
            self._aliases[alias] = spec.name

    def names(self) -> list[str]:
        return list(self._specs)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs.values())

    def canonical(self, name: str) -> str:
        """The engine's own name for a name or alias, or a ConfigError listing them."""
        name = self._aliases.get(name, name)
        if name not in self._specs:
            raise ConfigError(
                f"--engine {name}: no such engine; registered: {', '.join(self._specs)}."
            )
        return name

    def get(self, name: str) -> EngineSpec:
        return self._specs[self.canonical(name)]

    def implied_engine(self, keys: Iterable[str]) -> str | None:
        """The engine that settings alone select (``--upstream URL``), if any."""
        keys = set(keys)
        for spec in self._specs.values():
            if spec.implied_by and spec.implied_by in keys:
                return spec.name
        return None

    def option_fields(self) -> dict[str, OptionField]:
        """Every setting any engine takes; the first engine to declare one gives its
        type and help, and the list says which engines take it."""
        out: dict[str, OptionField] = {}
        for spec in self._specs.values():
            for name, info in spec.options.model_fields.items():
                extra = info.json_schema_extra
                if isinstance(extra, dict) and extra.get("flag") is False:
                    continue  # internal (supervision timeouts), not a user setting
                have = out.get(name)
                engines = (*have.engines, spec.name) if have else (spec.name,)
                out[name] = OptionField(name, have.info if have else info, engines)
        return out


def _load(target: str) -> EngineSpec:
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if callable(obj) and not isinstance(obj, EngineSpec) else obj


def load_specs(*, plugins: bool = True) -> EngineSpecs:
    """The built-in engines, then those other packages register as entry points."""
    specs = EngineSpecs(_load(t) for t in BUILTIN)
    if plugins:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                spec = ep.load()
                spec = spec() if callable(spec) and not isinstance(spec, EngineSpec) else spec
            except Exception as e:  # one broken plugin must not take the server down
                log.warning("engine plugin %s could not be loaded: %s", ep.value, e)
                continue
            if not isinstance(spec, EngineSpec):
                log.warning("engine plugin %s is not an EngineSpec; ignored", ep.value)
                continue
            specs.add(spec)
    return specs
