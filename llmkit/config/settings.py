"""``llmkit serve``'s settings, built once at start-up and passed down: flags >
``LLMKIT_*`` environment > config file (``--config``) > defaults.

The server's own settings are the fields of ``ServeSettings``; each engine's
settings are declared by the engine (``EngineSpec.options``) and kept here in
``options`` until that engine validates them. Every one of both is a
``llmkit serve`` flag, an ``LLMKIT_<NAME>`` variable and a config-file key,
generated from the declarations (``flag_fields``, ``serve_variables``), so a
setting and its help are written once.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from llmkit.config.file import (
    COMMON_FIELDS,
    ModelEntry,
    ModelFields,
    read_config_file,
    split_list,
)
from llmkit.core.durations import parse_keep_alive
from llmkit.engines.spec import EngineSpecs
from llmkit.env import DECLARED, Environment
from llmkit.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class ServeSettings(ModelFields):
    """The server's settings; ``engine``, ``load``, ``keep_alive`` and
    ``reasoning_budget`` (and the engine ``options``) apply to every ``--model``, or
    are the defaults of a config file's models."""

    model: list[str] = Field(
        default_factory=list,
        description="A catalog name, pulled repo id, .gguf file or model directory (default: the "
        "bundled SmolLM2-135M); repeat it to serve several models. For --engine upstream, the "
        "upstream's model name (default: all it serves); for vllm, a local path or a repo id.",
    )
    served_model_name: list[str] = Field(
        default_factory=list,
        description="Name(s) clients use for the model; the first is listed first.",
    )
    config: Path | None = Field(
        default=None,
        description="A YAML file of serve settings and a 'models' list, one entry per served "
        "model (docs/reference/config-file.md); flags and LLMKIT_* win over its top-level "
        "settings.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; 'HOST:PORT' sets both, as OLLAMA_HOST does.",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    api_key: str | None = Field(
        default=None,
        description="Require 'Authorization: Bearer KEY' on every route but /health and GET /.",
    )
    api_key_file: Path | None = Field(
        default=None,
        description="A file of API keys, one per line ('#' starts a comment); any of them "
        "opens the server, as --api-key does.",
    )
    no_auth: bool = Field(
        default=False,
        description="Serve on a non-loopback address without a key: anyone who reaches the "
        "port can use it. Without this, such a server refuses to start.",
    )
    allowed_host: list[str] = Field(
        default_factory=list,
        description="Host names clients may reach the server by, besides its address, IP "
        "addresses and loopback names (the DNS-rebinding guard); '*' allows any.",
    )
    cors_origin: list[str] = Field(
        default_factory=list,
        description="Origins (https://app.example:3000) whose web pages may call the server; "
        "'*' allows any. Other pages are refused, as OLLAMA_ORIGINS does.",
    )
    max_body_mb: float = Field(
        default=16, gt=0, description="The largest request body, in MiB; larger gets 413."
    )
    max_n: int = Field(
        default=16, ge=1, description="The most choices (n) one request may ask for; more get 400."
    )
    max_messages: int = Field(
        default=4096,
        ge=1,
        description="The most messages (or Responses input items) one request may carry; more "
        "gets 400.",
    )
    max_stop: int = Field(
        default=32,
        ge=0,
        description="The most stop strings (stop, stop_sequences, options.stop) one request "
        "may give; more get 400 (each is checked at every token).",
    )
    max_stop_length: int = Field(
        default=256, ge=1, description="The longest stop string, in characters; longer gets 400."
    )
    max_tools: int = Field(
        default=128,
        ge=0,
        description="The most tools (or functions) one request may offer; more get 400.",
    )
    max_inputs: int = Field(
        default=2048,
        ge=1,
        description="The most inputs one embeddings request (prompts one /v1/completions "
        "request, documents one rerank request) may carry; more get 400.",
    )
    max_schema_size: int = Field(
        default=10000,
        ge=1,
        description="The most JSON objects and arrays (subschemas, property maps, lists) in a "
        "request's JSON schema (response_format, format, a tool's parameters, all tools "
        "together); more gets 400.",
    )
    max_schema_depth: int = Field(
        default=64,
        ge=1,
        description="The deepest nesting of objects and arrays in a request's JSON schema; "
        "deeper gets 400.",
    )
    max_schema_enum: int = Field(
        default=1000,
        ge=1,
        description="The most alternatives a request's JSON schema offers (enum and const "
        "values, anyOf and oneOf branches, '|' in patterns), which constrained decoding checks "
        "at every token; more get 400.",
    )
    shutdown_timeout: float = Field(
        default=10,
        ge=0,
        description="Seconds running generations may go on after SIGTERM or Ctrl-C before "
        "each is ended with its final event (a second signal ends them at once).",
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without the API key (for a scraper)."
    )
    rate_limit: int | None = Field(
        default=None,
        ge=1,
        description="Requests a minute each API key (each client address without keys) may "
        "send; more get 429 with Retry-After.",
    )
    no_model_management: bool = Field(
        default=False,
        description="Turn off pulling, deleting, copying and creating models through the Ollama "
        "API (they answer 403), and serve only the configured models: none from the local "
        "catalog on demand.",
    )
    max_loaded_models: int | None = Field(
        default=None,
        ge=1,
        description="The most models loaded at once; loading another first unloads the one "
        "idle longest (default: no limit but memory, which the fit check guards).",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_requests: bool = Field(
        default=False,
        description="Log every generation request: its messages or prompt and settings.",
    )
    store: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the conversation store, where /v1/responses keeps "
        "stored responses (default: SQLite, llmkit.db in the data directory).",
    )
    responses_max_count: int = Field(
        default=10000,
        ge=1,
        description="The most responses (/v1/responses) the store keeps; past it the oldest "
        "are evicted.",
    )
    responses_max_age: str | None = Field(
        default=None,
        description="How long a stored response (/v1/responses) is kept: seconds or a duration "
        "(90m, 24h, 720h); older ones are evicted (default: no age limit).",
    )
    mcp: list[str] = Field(
        default_factory=list,
        description="An MCP server whose tools the Responses API, the chat page and llmkit chat "
        "may use: NAME=URL (streamable HTTP) or NAME='command args' (stdio, started by this "
        "server); repeat it for several. Requests name it by NAME.",
    )
    mcp_allow_urls: bool = Field(
        default=False,
        description="Let a request name any MCP server URL (server_url), not only the --mcp "
        "servers. A request never starts a stdio server.",
    )
    mcp_approval: Literal["always", "never"] = Field(
        default="always",
        description="Whether each call of a --mcp server's tool waits for the user's yes on the "
        "chat page and in llmkit chat.",
    )
    mcp_timeout: float = Field(
        default=30, gt=0, description="Seconds an MCP server may take to list or run a tool."
    )
    mcp_max_steps: int = Field(
        default=8,
        ge=1,
        description="The most model turns one request's tool loop may take; past it the "
        "reply ends incomplete.",
    )
    mcp_max_result: int = Field(
        default=20000,
        ge=100,
        description="The most characters of an MCP tool's result handed to the model; the "
        "rest is cut.",
    )
    # Not flags: the engines' settings as given (validated by each engine), and the
    # config file's models.
    options: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"flag": False})
    file_models: list[ModelEntry] = Field(
        default_factory=list, exclude=True, json_schema_extra={"flag": False}
    )

    @field_validator("model", "served_model_name", "allowed_host", "cors_origin", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        # LLMKIT_SERVED_MODEL_NAME="a,b" as well as a JSON list; one --model as a string.
        return split_list(v)

    @field_validator("mcp", mode="before")
    @classmethod
    def _one_or_list(cls, v: object) -> object:
        # A command holds commas and spaces: LLMKIT_MCP is one NAME=... or a JSON list.
        if isinstance(v, str):
            return json.loads(v) if v.lstrip().startswith("[") else [v]
        return [] if v is None else v

    @field_validator("responses_max_age")
    @classmethod
    def _age(cls, v: str | None) -> str | None:
        if v is not None and parse_keep_alive(v) is None:
            raise ValueError("must be a duration (90m, 24h) or seconds, not negative")
        return v

    @property
    def responses_max_age_s(self) -> float | None:
        return None if self.responses_max_age is None else parse_keep_alive(self.responses_max_age)

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

    def api_keys(self) -> tuple[str, ...]:
        """``--api-key`` and the keys of ``--api-key-file``."""
        keys = [self.api_key] if self.api_key else []
        if self.api_key_file is not None:
            try:
                lines = self.api_key_file.read_text().splitlines()
            except OSError as e:
                raise ConfigError(
                    f"--api-key-file {self.api_key_file}: {e.strerror or e}."
                ) from None
            keys += [k for line in lines if (k := line.split("#", 1)[0].strip())]
            if len(keys) == (1 if self.api_key else 0):
                raise ConfigError(f"--api-key-file {self.api_key_file} holds no key.")
        return tuple(keys)

    def check_exposure(self) -> None:
        """A server others can reach needs a key, unless the user says otherwise."""
        if is_loopback(self.host) or self.no_auth or self.api_keys():
            return
        raise ConfigError(
            f"--host {self.host} lets anyone who can reach this machine use the server, and "
            "no API key is set. Add one: --api-key KEY (or LLMKIT_API_KEY=KEY, or "
            "--api-key-file FILE with one key per line), and give clients the key; or "
            "pass --no-auth to serve without one."
        )


def server_fields() -> dict[str, FieldInfo]:
    """The server's own settings that are flags (``options`` and the file's models are not)."""
    out = {}
    fields = ServeSettings.model_fields
    # The server's own first, then what it shares with each model entry (--model
    # before --engine in --help).
    for name in [n for n in fields if n not in COMMON_FIELDS] + list(COMMON_FIELDS):
        extra = fields[name].json_schema_extra
        if not (isinstance(extra, dict) and extra.get("flag") is False):
            out[name] = fields[name]
    return out


def load_serve_settings(
    flags: dict[str, Any], env: Environment, specs: EngineSpecs
) -> ServeSettings:
    """Flags > ``LLMKIT_*`` > config file > defaults, for the server's settings and
    the engines' alike. Raises pydantic's ValidationError for a bad server setting
    and ConfigError for a bad file or engine."""
    server = set(server_fields())
    engine_keys = set(specs.option_fields())
    from_env = env.serve_values()
    env_server = {k: v for k, v in from_env.items() if k in server}
    env_options = {k: v for k, v in from_env.items() if k in engine_keys}
    path = flags.get("config") or env_server.get("config")
    file: dict[str, Any] = {}
    if path:
        file = read_config_file(Path(path), server - {"config"}, engine_keys)
    options = {
        **file.pop("options", {}),
        **env_options,
        **{k: v for k, v in flags.items() if k in engine_keys},
    }
    values = {**file, **env_server, **{k: v for k, v in flags.items() if k in server}}
    settings = ServeSettings.model_validate({**values, "options": options})
    if "engine" in settings.model_fields_set:
        settings.engine = specs.canonical(settings.engine)
    return settings


def flag_fields(specs: EngineSpecs) -> list[tuple[str, FieldInfo, str]]:
    """(name, declaration, help) of every ``llmkit serve`` flag: the server's own,
    then each engine setting with the engines that take it."""
    out = []
    for name, info in server_fields().items():
        help_text = info.description or ""
        if name == "engine":
            help_text = "The engine that runs the model. " + "; ".join(
                f"{s.name}: {s.summary}" for s in specs
            )
        out.append((name, info, help_text))
    for name, opt in specs.option_fields().items():
        if name not in server_fields():
            out.append((name, opt.info, opt.description))
    return out


def serve_variables(specs: EngineSpecs) -> list[tuple[str, str]]:
    """(``LLMKIT_<NAME>``, help) for each serve flag whose variable no other
    command shares (those are declared in ``llmkit.env``)."""
    return [
        (f"LLMKIT_{name.upper()}", help_text)
        for name, _info, help_text in flag_fields(specs)
        if f"LLMKIT_{name.upper()}" not in DECLARED
    ]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the loopback names: reachable from this machine only."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
