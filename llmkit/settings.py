"""Settings, built once at start-up and passed down: flags > ``LLMKIT_*``
environment > defaults. No other module reads the environment.

Every field of ``ServeSettings`` is also a ``llmkit serve`` flag (see
``cli/options.py``): its description is the flag's help, its env var is
``LLMKIT_<NAME>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def data_dir(env: dict[str, str] | None = None) -> Path:
    """Where llmkit keeps its state: ``LLMKIT_HOME``, else the user data directory."""
    env = dict(os.environ) if env is None else env
    home = env.get("LLMKIT_HOME")
    return Path(home) if home else Path(platformdirs.user_data_dir("llmkit"))


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMKIT_", extra="ignore")

    model: str | None = Field(
        default=None, description="A .gguf file to serve (default: the bundled SmolLM2-135M)."
    )
    served_model_name: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Name(s) clients use for the model; the first is listed first.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; 'HOST:PORT' sets both, as OLLAMA_HOST does.",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Context length per sequence (default: the model's own, capped for memory).",
    )
    api_key: str | None = Field(
        default=None, description="Require 'Authorization: Bearer KEY' on /v1 and /api requests."
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for llama.cpp (default: all usable cores)."
    )
    parallel: int = Field(
        default=4, ge=1, le=64, description="Sequences decoded together in one batch."
    )
    max_queue: int = Field(
        default=64, ge=0, description="Requests that may wait for a free sequence before 503."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    @field_validator("served_model_name", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        # LLMKIT_SERVED_MODEL_NAME="a,b" as well as a JSON list.
        if isinstance(v, str):
            if v.lstrip().startswith("["):
                return json.loads(v)
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

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

