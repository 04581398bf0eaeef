"""What ``llmkit serve`` serves, as data: the model entries (one per served model),
the multi-model config file (read here and nowhere else), and the small parsers
they share (lists, Ollama's ``keep_alive``).

    # models.yaml: any serve setting at the top (flags and LLMKIT_* still win),
    # then one entry per served model; an entry's own keys win over the top's.
    keep_alive: 10m
    models:
      - model: SmolLM2-135M-Instruct
        served_model_name: [smol]
      - model: ./qwen2-0_5b-instruct
        engine: transformers
        load: first-use

Which settings an engine takes is the engine's business (its ``EngineSpec``):
an entry keeps them in ``options`` until the engine's own model validates them,
so a setting that does not apply to the chosen engine is refused before
anything loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmkit.core.durations import parse_keep_alive
from llmkit.errors import ConfigError

#: The settings every served model has, whatever its engine.
COMMON_FIELDS = ("engine", "load", "keep_alive", "reasoning_budget")


class ModelFields(BaseModel):
    """What and when to serve, for any engine; ``ServeSettings`` has them too."""

    engine: str = Field(default="llamacpp", description="The engine that runs the model.")
    load: Literal["startup", "first-use"] = Field(
        default="startup", description="Load each model at start-up or on its first request."
    )
    keep_alive: str = Field(
        default="-1",
        description="How long an idle model stays loaded, as Ollama's keep_alive: 5m, 1h, 300 "
        "(seconds), 0 (unload after each request), -1 (forever).",
    )

    reasoning_budget: int = Field(
        default=-1,
        ge=-1,
        description="The most tokens a reasoning model's thinking may take before the engine "
        "closes it and the answer follows, for requests that set no budget or effort of their "
        "own; -1: no limit but max_tokens.",
    )

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, v: object) -> object:
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str):
            parse_keep_alive(v)  # refuse now what could not be read later
        return v


class ModelEntry(ModelFields):
    """One served model. ``options`` are the engine's settings, as given for this
    model; ``defaults`` the server-wide ones, of which the engine takes those that
    apply to it."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    served_model_name: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    where: str = ""  # how to name this entry in an error: 'models.yaml, model 2: '

    @field_validator("served_model_name", mode="before")
    @classmethod
    def _names(cls, v: object) -> object:
        return split_list(v)

    def engine_options(self, accepted: set[str]) -> dict[str, Any]:
        """The engine's options: server-wide ones it accepts, then the entry's own
        (all of them, so the engine's validation refuses any that do not apply)."""
        return {k: v for k, v in self.defaults.items() if k in accepted} | self.options


def split_list(v: object) -> object:
    """'a,b' or '["a","b"]' (env, YAML) -> a list; None -> []; lists pass through."""
    if v is None:
        return []
    if isinstance(v, str):
        if v.lstrip().startswith("["):
            return json.loads(v)
        return [x.strip() for x in v.split(",") if x.strip()]
    return v


# -- the config file -------------------------------------------------------------


def read_config_file(path: Path, server_keys: set[str], option_keys: set[str]) -> dict[str, Any]:
    """The file's top-level settings (server settings, and engine options under
    ``options``), with ``models`` as a list of ``ModelEntry``.

    Unknown keys are refused with the ones that exist: a typo must not be ignored.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"Cannot read the config file {path}: {e.strerror or e}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, with 'models:' a list.")
    known = server_keys | option_keys | {"models"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; the file takes "
            f"{', '.join(sorted(known))}."
        )
    models = data.pop("models", None) or []
    if not isinstance(models, list):
        raise ConfigError(f"{path}: 'models' must be a list of models, one mapping each.")
    entries = []
    entry_keys = set(ModelEntry.model_fields) - {"options", "defaults", "where"}
    for i, item in enumerate(models, start=1):
        where = f"{path}, model {i}: "
        if not isinstance(item, dict):
            raise ConfigError(f"{where}each model must be a mapping (model: ..., engine: ...).")
        unknown = sorted(set(item) - entry_keys - option_keys)
        if unknown:
            raise ConfigError(f"{where}{', '.join(unknown)}: unknown setting")
        own = {k: v for k, v in item.items() if k in entry_keys}
        try:
            entry = ModelEntry.model_validate(
                {**own, "options": {k: v for k, v in item.items() if k in option_keys}}
            )
        except ValidationError as e:
            raise ConfigError(where + validation_message(e, flags=False)) from None
        entry.where = where
        entries.append(entry)
    options = {k: data.pop(k) for k in list(data) if k in option_keys and k not in server_keys}
    return {**data, "options": options, "file_models": entries}


def validation_message(e: ValidationError, *, flags: bool = True) -> str:
    """A pydantic error as one line naming each setting (as a flag, or as a key)."""

    def one(err: Any) -> str:
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        if not err["loc"]:  # a check across several settings
            return msg
        name = "-".join(str(x) for x in err["loc"])
        return f"--{name.replace('_', '-')}: {msg}" if flags else f"{name}: {msg}"

    return "; ".join(one(err) for err in e.errors())
