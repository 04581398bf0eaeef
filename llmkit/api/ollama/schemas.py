"""Wire models of the Ollama API, as its reference (``docs/api.md``) describes them.

Requests accept fields we don't know and log them, as the OpenAI side does.
Responses follow the reference's field names and units exactly (nanoseconds,
RFC 3339 times); their fields are declared in the order they go on the wire.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from llmkit.api.images import ImageRef
from llmkit.api.limits import Sizes, stops

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
    # Past the context it means nothing; llama.cpp keeps a buffer of that many tokens.
    repeat_last_n: int | None = Field(default=None, ge=-1, le=1 << 20)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # llmkit's own: false turns speculative decoding off for this request.
    speculative: bool | None = None


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
    logprobs: bool | None = None
    top_logprobs: int | None = None  # 0..20 alternatives at each position

    def sizes(self) -> Sizes:
        """What ``api.limits`` bounds, counted before anything is built."""
        return Sizes(
            stop=stops(self.options.stop if self.options else None),
            stop_param="options.stop",
            schemas=(("format", [self.format if isinstance(self.format, dict) else None]),),
        )


class ChatRequest(GenerationFields):
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    # llmkit's extension, in OpenAI's words ("auto", "none", "required" or
    # {"type": "function", "function": {"name": ...}}): Ollama itself has no way
    # to force a call or to forbid one. Also taken from ``options.tool_choice``,
    # which Ollama's clients pass through untouched.
    tool_choice: str | dict[str, Any] | None = None
    # Likewise OpenAI's ``parallel_tool_calls`` (false: at most one call), here or
    # in ``options``.
    parallel_tool_calls: bool | None = None

    def image_refs(self) -> list[ImageRef]:
        """Each message's ``images`` (base64), in order, for ``api.images``."""
        return [
            ImageRef(b64, f"messages.{i}.images.{k}", kind="base64")
            for i, m in enumerate(self.messages)
            for k, b64 in enumerate(m.images or ())
        ]

    def sizes(self) -> Sizes:
        tools = self.tools or []
        fns = [t.get("function") for t in tools]
        params = [f.get("parameters") if isinstance(f, dict) else None for f in fns]
        common = super().sizes()
        return replace(
            common,
            messages=len(self.messages),
            images=len(self.image_refs()),
            tools=len(tools),
            schemas=(*common.schemas, ("tools", params)),
        )


class GenerateRequest(GenerationFields):
    prompt: str | None = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = False
    images: list[str] | None = None

    def image_refs(self) -> list[ImageRef]:
        """``images`` (base64), in order, for ``api.images``."""
        return [
            ImageRef(b64, f"images.{k}", kind="base64") for k, b64 in enumerate(self.images or ())
        ]

    def sizes(self) -> Sizes:
        return replace(super().sizes(), images=len(self.image_refs()), images_param="images")


class ModelRequest(OllamaRequest):
    """``/api/show`` takes ``model``; old clients send ``name``."""

    model: str | None = None
    name: str | None = None
    verbose: bool | None = False

    @property
    def wanted(self) -> str:
        return self.model or self.name or ""


# -- responses ------------------------------------------------------------------


class CalledFunction(BaseModel):
    name: str
    arguments: dict[str, Any]


class ToolCall(BaseModel):
    """A call as Ollama writes it: arguments as an object, not a string."""

    id: str
    function: CalledFunction


class Omitting(BaseModel):
    """A response whose fields named in ``omit_if_none`` are left out, not null."""

    omit_if_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        for key in self.omit_if_none:
            if out.get(key) is None:
                out.pop(key, None)
        return out


class TokenLogprob(Omitting):
    omit_if_none = ("bytes",)
    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(TokenLogprob):
    """A reply token's entry; its alternatives are left out when none were asked."""

    omit_if_none = ("bytes", "top_logprobs")
    top_logprobs: list[TokenLogprob] | None = None


class ResponseMessage(Omitting):
    omit_if_none = ("thinking", "tool_calls")
    role: Literal["assistant"] = "assistant"
    content: str
    thinking: str | None = None  # apart from the content; left out when none
    tool_calls: list[ToolCall] | None = None


class ChatResponse(Omitting):
    """A line of a chat stream, before the last."""

    omit_if_none = ("logprobs",)
    model: str
    created_at: str
    message: ResponseMessage
    done: Literal[False] = False
    logprobs: list[Logprob] | None = None  # the tokens of this line's text, when asked


class GenerateResponse(Omitting):
    """A line of a generate stream, before the last."""

    omit_if_none = ("thinking", "logprobs")
    model: str
    created_at: str
    response: str
    thinking: str | None = None
    done: Literal[False] = False
    logprobs: list[Logprob] | None = None


class DoneFields(BaseModel):
    """What every final object starts with."""

    model: str
    created_at: str
    done: Literal[True] = True
    done_reason: Literal["stop", "length", "load", "unload"]


class ChatLoadResponse(DoneFields):
    """The answer to a chat without messages: the model is loaded (or unloaded)."""

    message: ResponseMessage = Field(default_factory=lambda: ResponseMessage(content=""))


class GenerateLoadResponse(DoneFields):
    """The answer to a generate without a prompt: the model is loaded (or unloaded)."""

    response: str = ""


class Metrics(DoneFields):
    """The numbers closing a generation; durations in nanoseconds."""

    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_cached_count: int | None = None  # left out when nothing came from the cache
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int


class ChatDoneResponse(Metrics, Omitting):
    """The last line of a chat stream (empty content), or the whole answer."""

    omit_if_none = ("logprobs", "prompt_eval_cached_count")
    message: ResponseMessage
    logprobs: list[Logprob] | None = None  # the whole answer's, when asked


class GenerateDoneResponse(Metrics, Omitting):
    """The last line of a generate stream (empty response), or the whole answer."""

    omit_if_none = ("thinking", "context", "logprobs", "prompt_eval_cached_count")

    response: str
    thinking: str | None = None
    # The conversation so far as token ids, for the next request's ``context``;
    # left out when the engine cannot tell (a remote server).
    context: list[int] | None = None
    logprobs: list[Logprob] | None = None


class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str


class ListedModel(BaseModel):
    """An entry of ``/api/tags``."""

    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    # "completion", "embedding": what the model can be asked for, as /api/show says.
    capabilities: list[str] = Field(default_factory=list)


class TagsResponse(BaseModel):
    models: list[ListedModel]


class RunningModel(BaseModel):
    """An entry of ``/api/ps``."""

    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int = 0  # not measured
    context_length: int
    # llmkit's own, beside Ollama's: what runs it and how busy it is.
    engine: str = ""
    served_as: str = ""  # the model's first name (the others are its aliases)
    slots: int = 0  # sequences it runs at once; 0: the engine does not say
    slots_in_use: int = 0
    queue: int = 0  # requests waiting for a free slot
    speculative: str = ""  # speculative decoding: mode and acceptance ("ngram 72%")


class PsResponse(BaseModel):
    models: list[RunningModel]


class ShowResponse(BaseModel):
    license: str
    modelfile: str
    parameters: str
    template: str
    system: str | None = None  # a made model's system prompt (Ollama's ``SYSTEM``)
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class ErrorResponse(BaseModel):
    """Ollama's error shape: the message, as ``api.StatusError`` reads it; for an
    llmkit error with a code, also the code, the field and its details, which
    llmkit's client reads back into the same exception (Ollama's clients ignore
    them)."""

    error: str
    code: str | None = None
    param: str | None = None
    details: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}
