"""Settings, built once at start-up and passed down: flags > ``LLMKIT_*``
environment > config file (``--config``) > defaults. No other module reads the
environment.

Every field of ``ServeSettings`` is also a ``llmkit serve`` flag (see
``cli/options.py``): its description is the flag's help, its env var is
``LLMKIT_<NAME>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from llmkit.serve_config import ModelEntry, ModelFields, read_config_file, split_list


def data_dir(env: dict[str, str] | None = None) -> Path:
    """Where llmkit keeps its state: ``LLMKIT_HOME``, else the user data directory."""
    env = dict(os.environ) if env is None else env
    home = env.get("LLMKIT_HOME")
    return Path(home) if home else Path(platformdirs.user_data_dir("llmkit"))


class ServeSettings(BaseSettings, ModelFields):
    """The server's settings; the per-model ones (``ModelFields``: engine, context,
    ...) apply to every ``--model``, or are the defaults of a config file's models."""

    model_config = SettingsConfigDict(env_prefix="LLMKIT_", extra="ignore")

    model: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="A catalog name, pulled repo id, .gguf file or model directory (default: the "
        "bundled SmolLM2-135M); repeat it to serve several models. For --engine upstream, the "
        "upstream's model name (default: all it serves); for vllm, a local path or a repo id.",
    )
    served_model_name: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Name(s) clients use for the model; the first is listed first.",
    )
    config: Path | None = Field(
        default=None,
        description="A YAML file of serve settings and a 'models' list, one entry per served "
        "model (see the README); flags and LLMKIT_* win over its top-level settings.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; 'HOST:PORT' sets both, as OLLAMA_HOST does.",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    api_key: str | None = Field(
        default=None, description="Require 'Authorization: Bearer KEY' on /v1 and /api requests."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_requests: bool = Field(
        default=False,
        description="Log every generation request: its messages or prompt and settings.",
    )
    # The config file's models (read with the file, in serve_config); not a flag.
    file_models: list[ModelEntry] = Field(
        default_factory=list, exclude=True, json_schema_extra={"flag": False}
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # flags > environment > config file > defaults
        path = getattr(init_settings, "init_kwargs", {}).get("config") or env_settings().get(
            "config"
        )
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _ConfigFileSource(settings_cls, path),
            file_secret_settings,
        )

    @field_validator("model", "served_model_name", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        # LLMKIT_SERVED_MODEL_NAME="a,b" as well as a JSON list; one --model as a string.
        return split_list(v)

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.lower()
        if v not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be debug, info, warning or error")
        return v

    @model_validator(mode="after")
    def _host_port(self) -> ServeSettings:
        host, port = split_host(self.host)
        if port is not None:
            if "port" in self.model_fields_set and self.port != port:
                raise ValueError(f"host says port {port} but port is {self.port}; give one")
            self.port = port
        self.host = host
        return self

    @property
    def client_host(self) -> str:
        """Where a client on this machine reaches the server: never 0.0.0.0."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def base_url(self) -> str:
        host = f"[{self.client_host}]" if ":" in self.client_host else self.client_host
        return f"http://{host}:{self.port}"


class _ConfigFileSource(PydanticBaseSettingsSource):
    """``--config FILE`` as a settings source, below flags and the environment."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole file is read at once, in __call__

    def __call__(self) -> dict[str, Any]:
        if not self.path:
            return {}
        fields = set(self.settings_cls.model_fields) - {"config", "file_models"}
        return read_config_file(Path(self.path), fields)


def split_host(value: str) -> tuple[str, int | None]:
    """'0.0.0.0:11434' -> ('0.0.0.0', 11434); also 'http://host:port', '[::1]:8000',
    ':8000' (all interfaces, as Ollama reads it) and a bare host (port None)."""
    v = value.strip()
    for scheme in ("http://", "https://"):
        v = v.removeprefix(scheme)
    v = v.rstrip("/")
    if v.startswith("["):  # [v6]:port
        host, _, rest = v[1:].partition("]")
        port = rest.removeprefix(":")
    elif v.count(":") == 1:
        host, port = v.split(":")
    else:  # a bare name or a bare IPv6 address
        return v or "127.0.0.1", None
    if not port:
        return host or "0.0.0.0", None
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{value}' has no valid port")
    return host or "0.0.0.0", int(port)


SOURCES = ("hf", "hf-mirror", "modelscope")


class ModelsSettings(BaseSettings):
    """Where pulled models live, where they come from, how much memory to plan for.

    Besides ``LLMKIT_*``, it reads the variables the hubs' own tools read, so a
    shell set up for ``huggingface-cli`` or ``modelscope`` works unchanged.
    """

    model_config = SettingsConfigDict(env_prefix="LLMKIT_", extra="ignore")

    models_dir: Path = Field(
        default_factory=lambda: data_dir() / "models",
        validation_alias=AliasChoices("models_dir", "LLMKIT_MODELS"),
        description="Where pulled models are kept (env LLMKIT_MODELS).",
    )
    sources: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(SOURCES),
        description="Sources to try, in order, when one is unreachable (comma-separated).",
    )
    hf_endpoint: str = Field(
        default="https://huggingface.co",
        validation_alias=AliasChoices("hf_endpoint", "HF_ENDPOINT"),
        description="Hugging Face endpoint for --source hf (env HF_ENDPOINT, as huggingface_hub).",
    )
    hf_mirror: str = Field(
        default="https://hf-mirror.com", description="Endpoint for --source hf-mirror."
    )
    modelscope_endpoint: str = Field(
        default="https://modelscope.cn",
        validation_alias=AliasChoices("modelscope_endpoint", "MODELSCOPE_ENDPOINT"),
        description="ModelScope endpoint for --source modelscope (env MODELSCOPE_ENDPOINT).",
    )
    hf_home: Path = Field(
        default_factory=lambda: Path("~/.cache/huggingface").expanduser(),
        validation_alias=AliasChoices("hf_home", "HF_HOME"),
        description="Hugging Face's own cache; files already there are not downloaded again.",
    )
    modelscope_cache: Path = Field(
        default_factory=lambda: Path("~/.cache/modelscope").expanduser(),
        validation_alias=AliasChoices("modelscope_cache", "MODELSCOPE_CACHE"),
        description="ModelScope's own cache (its download locks live there).",
    )
    memory_gib: float | None = Field(
        default=None,
        gt=0,
        description="Memory to plan for, in GiB (default: this machine's available RAM).",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _split_sources(cls, v: object) -> object:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
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
