"""Wire models of the Ollama API, as its reference (``docs/api.md``) describes them.

Requests accept fields we don't know and log them, as the OpenAI side does.
Responses are plain dicts built in ``convert``: Ollama's shapes are small and
its clients read them leniently, but the field names and units (nanoseconds,
RFC 3339 times) follow the reference exactly.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger("llmkit.api.ollama")


class OllamaRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self) -> OllamaRequest:
        if self.model_extra:
            log.info("ignored request fields: %s", ", ".join(sorted(self.model_extra)))
        return self


class Options(BaseModel):
    """The runtime options llmkit honours; the rest of Ollama's list (``num_gpu``,
    ``mirostat``...) is accepted and logged as ignored."""

    model_config = ConfigDict(extra="allow")

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    num_predict: int | None = None
    num_ctx: int | None = Field(default=None, ge=1)
    stop: list[str] | str | None = None
    seed: int | None = None
    repeat_penalty: float | None = Field(default=None, ge=0)
    repeat_last_n: int | None = Field(default=None, ge=-1)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


# ``format``: "" or "json", or a JSON Schema object.
Format = Literal["", "json"] | dict[str, Any] | None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    thinking: str | None = None


class GenerationFields(OllamaRequest):
    """What chat and generate share."""

    model: str
    format: Format = None
    options: Options | None = None
    stream: bool | None = True
    keep_alive: float | str | None = None
    think: bool | str | None = None


class ChatRequest(GenerationFields):
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class GenerateRequest(GenerationFields):
    prompt: str | None = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = False
    images: list[str] | None = None


class ModelRequest(OllamaRequest):
    """``/api/show`` takes ``model``; old clients send ``name``."""

    model: str | None = None
    name: str | None = None
    verbose: bool | None = False

    @property
    def wanted(self) -> str:
        return self.model or self.name or ""
