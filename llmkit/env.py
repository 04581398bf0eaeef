"""The bottom of the house: every environment variable llmkit reads, declared once,
and the paths and endpoints the lower packages need (the data directory, the
models folder, the hubs), so ``models/``, ``memory/`` and ``client/`` never reach
up into the server's settings.

This is the only module that reads ``os.environ``. A command reads it once, at
start-up (``Environment.read()``), and passes the snapshot down; library callers
(``Chat()``, ``ModelsSettings()``) get a fresh snapshot when they give none.

The serve settings add one ``LLMKIT_<FLAG>`` per ``llmkit serve`` flag, generated
from the settings and the registered engines (``llmkit.config.settings``);
``VARIABLES`` here are the ones every command shares.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from pydantic import BaseModel, Field, field_validator, model_validator


@dataclass(frozen=True)
class Variable:
    name: str
    description: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "LLMKIT_HOME",
        "llmkit's data directory: the conversation store, the running server's address, "
        "the chat's input history, pulled models (default: the user data directory).",
    ),
    Variable("LLMKIT_MODELS", "Where pulled models are kept (default: <data dir>/models)."),
    Variable(
        "LLMKIT_STORE",
        "SQLAlchemy URL of the conversation store, for chat, run, sessions, Chat() and the "
        "LangChain history alike (default: SQLite, llmkit.db in the data directory).",
    ),
    Variable(
        "LLMKIT_URL", "The server `llmkit chat` and `Chat()` talk to (default: the local one)."
    ),
    Variable(
        "LLMKIT_API_KEY",
        "The API key: `llmkit serve` requires it, `llmkit chat` and `Chat()` send it.",
    ),
    Variable(
        "LLMKIT_SOURCES",
        "Where `pull` looks, in order, comma-separated (default: hf,hf-mirror,modelscope).",
    ),
    Variable("LLMKIT_HF_MIRROR", "The endpoint of --source hf-mirror (https://hf-mirror.com)."),
    Variable(
        "LLMKIT_MEMORY_GIB",
        "Memory to plan for, in GiB, in `mem` and the fit check (default: available RAM).",
    ),
    Variable(
        "LLMKIT_OTHER_MODELS",
        "Which other tools' GGUF files `list` and `serve --model` take in place, "
        "comma-separated: ollama, hf-cache, lmstudio, or none (default: all three).",
    ),
    Variable(
        "LLMKIT_LMSTUDIO_MODELS",
        "LM Studio's models folder (default: ~/.lmstudio/models, else ~/.cache/lm-studio/models).",
    ),
    # The ecosystem's own, read the way their tools read them.
    Variable("HF_ENDPOINT", "Hugging Face endpoint for --source hf, as huggingface_hub reads it."),
    Variable(
        "HF_HOME",
        "Hugging Face's cache: files already there are linked, not fetched; its GGUFs are listed.",
    ),
    Variable("OLLAMA_MODELS", "Ollama's models folder (default: ~/.ollama/models), read in place."),
    Variable("MODELSCOPE_ENDPOINT", "ModelScope endpoint for --source modelscope."),
    Variable("MODELSCOPE_CACHE", "ModelScope's own cache (its download locks live there)."),
    Variable(
        "CUDA_VISIBLE_DEVICES", "The GPUs the transformers and vLLM engines see, as CUDA reads it."
    ),
)

DECLARED = frozenset(v.name for v in VARIABLES)


@dataclass(frozen=True)
class Environment:
    """A snapshot of the process environment, read once; what llmkit takes from it."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        return cls(dict(os.environ if environ is None else environ))

    def get(self, name: str) -> str | None:
        """A variable's value; empty counts as unset."""
        return self.values.get(name) or None

    def serve_values(self, prefix: str = "LLMKIT_") -> dict[str, str]:
        """``LLMKIT_<NAME>`` values by lower-case name, for the serve settings."""
        n = len(prefix)
        return {k[n:].lower(): v for k, v in self.values.items() if k.startswith(prefix) and v}

    @property
    def data_dir(self) -> Path:
        home = self.get("LLMKIT_HOME")
        return Path(home) if home else Path(platformdirs.user_data_dir("llmkit"))

    @property
    def store_url(self) -> str | None:
        """``LLMKIT_STORE``: the store every command and ``Chat`` use instead of the
        SQLite file in the data directory."""
        return self.get("LLMKIT_STORE")

    @property
    def url(self) -> str | None:
        return self.get("LLMKIT_URL")

    @property
    def api_key(self) -> str | None:
        return self.get("LLMKIT_API_KEY")

    @property
    def server_file(self) -> Path:
        """Where a running ``llmkit serve`` records its address for other terminals."""
        return self.data_dir / "server.json"

    @property
    def chat_history_file(self) -> Path:
        return self.data_dir / "chat_history"

    def models(self, **overrides: object) -> ModelsSettings:
        return ModelsSettings.from_env(self, **overrides)


SOURCES = ("hf", "hf-mirror", "modelscope")
#: Other tools whose model files llmkit reads in place (``llmkit.models.foreign``).
OTHER_MODELS = ("ollama", "hf-cache", "lmstudio")
_ENDPOINTS = {
    "hf_endpoint": "HF_ENDPOINT",
    "hf_mirror": "LLMKIT_HF_MIRROR",
    "modelscope_endpoint": "MODELSCOPE_ENDPOINT",
    "hf_home": "HF_HOME",
    "modelscope_cache": "MODELSCOPE_CACHE",
    "models_dir": "LLMKIT_MODELS",
    "sources": "LLMKIT_SOURCES",
    "memory_gib": "LLMKIT_MEMORY_GIB",
    "ollama_models": "OLLAMA_MODELS",
    "lmstudio_models": "LLMKIT_LMSTUDIO_MODELS",
    "other_models": "LLMKIT_OTHER_MODELS",
}


class ModelsSettings(BaseModel):
    """Where pulled models live, where they come from, how much memory to plan for.

    Besides ``LLMKIT_*``, it takes the variables the hubs' own tools read, so a
    shell set up for ``huggingface-cli`` or ``modelscope`` works unchanged.
    Built from an ``Environment`` (``from_env``); ``ModelsSettings()`` reads the
    process environment for what it is not given.
    """

    models_dir: Path
    sources: list[str] = Field(default_factory=lambda: list(SOURCES))
    hf_endpoint: str = "https://huggingface.co"
    hf_mirror: str = "https://hf-mirror.com"
    modelscope_endpoint: str = "https://modelscope.cn"
    hf_home: Path = Field(default_factory=lambda: Path("~/.cache/huggingface").expanduser())
    modelscope_cache: Path = Field(default_factory=lambda: Path("~/.cache/modelscope").expanduser())
    memory_gib: float | None = Field(default=None, gt=0)
    #: The user's additions to the model-name catalog (``llmkit/models/tags.toml``).
    tags_file: Path | None = None
    ollama_models: Path = Field(default_factory=lambda: Path("~/.ollama/models").expanduser())
    lmstudio_models: Path | None = None  # None: LM Studio's usual folders
    other_models: list[str] = Field(default_factory=lambda: list(OTHER_MODELS))

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, data: object) -> object:
        # What the caller did not give comes from the environment it passed, or the process's.
        if isinstance(data, dict):
            env = data.pop("env", None) or Environment.read()
            return {**_from_environment(env), **data}
        return data

    @classmethod
    def from_env(cls, env: Environment, **overrides: object) -> ModelsSettings:
        return cls(env=env, **overrides)

    @field_validator("sources", mode="before")
    @classmethod
    def _split_sources(cls, v: object) -> object:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("other_models", mode="before")
    @classmethod
    def _split_others(cls, v: object) -> object:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip() and x.strip() != "none"]
        return v

    @field_validator("other_models")
    @classmethod
    def _known_others(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in OTHER_MODELS]
        if unknown:
            raise ValueError(
                f"LLMKIT_OTHER_MODELS takes {', '.join(OTHER_MODELS)} or none; got {', '.join(v)}"
            )
        return v

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in SOURCES]
        if unknown or not v:
            raise ValueError(f"sources must be among {', '.join(SOURCES)}; got {', '.join(v)}")
        return v

    def endpoint(self, source: str) -> str:
        """The base URL a source is reached at."""
        return {
            "hf": self.hf_endpoint,
            "hf-mirror": self.hf_mirror,
            "modelscope": self.modelscope_endpoint,
        }[source].rstrip("/")


def _from_environment(env: Environment) -> dict[str, object]:
    out: dict[str, object] = {k: env.get(var) for k, var in _ENDPOINTS.items() if env.get(var)}
    if "models_dir" not in out:
        out["models_dir"] = env.data_dir / "models"
    out["tags_file"] = env.data_dir / "tags.toml"
    return out
