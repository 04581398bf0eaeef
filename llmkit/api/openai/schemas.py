"""Wire models of the OpenAI API, as its reference describes them.

Requests accept fields we don't know (clients add new ones all the time) and log
them; responses are built to validate against OpenAI's published schemas.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from llmkit.api.images import ImageRef
from llmkit.api.limits import MAX_LOGIT_BIAS, Sizes, stops
from llmkit.version import __version__

log = logging.getLogger("llmkit.api.openai")

# OpenAI's field says which backend configuration answered; ours names the release.
SYSTEM_FINGERPRINT = f"fp_llmkit_{__version__}"


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self) -> OpenAIRequest:
        if self.model_extra:
            log.info("ignored request fields: %s", ", ".join(sorted(self.model_extra)))
        return self


# -- requests -------------------------------------------------------------------


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str  # a base64 data URI, or an http(s) URL the server may fetch (--image-fetch)
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class Omitting(BaseModel):
    """A response object whose unset (None) fields are left out, not null: the
    spec's tool-call pieces have no nullable fields."""

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class FunctionCall(Omitting):
    """A function the model called: in the history, and (with every field) in replies."""

    model_config = ConfigDict(extra="allow")
    name: str | None = None
    arguments: str | None = None


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | ImagePart | OtherPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None  # the legacy single call
    # An assistant turn's thinking sent back: DeepSeek's and vLLM's name, and the newer one.
    reasoning_content: str | None = None
    reasoning: str | None = None


class FunctionDefinition(BaseModel):
    """A function offered to the model; ``parameters`` is checked as a JSON Schema
    by ``core.tools`` (a 400 naming the field, not pydantic's wording)."""

    model_config = ConfigDict(extra="allow")
    name: str
    description: str | None = None
    parameters: Any = None
    strict: bool | None = None


class FunctionName(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class FunctionTyped(BaseModel):
    """``{"type": "function", "function": ...}``: a tool, or a tool_choice naming one."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"] = "function"


class ChatTool(FunctionTyped):
    function: FunctionDefinition


class NamedToolChoice(FunctionTyped):
    function: FunctionName


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class SamplingFields(OpenAIRequest):
    """What chat and completions share."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)  # at most --max-n: a server setting
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = Field(default=None, max_length=MAX_LOGIT_BIAS)
    user: str | None = None
    # Not OpenAI's, but every vLLM and llama.cpp user passes them through extra_body.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool = False
    # llmkit's own: false turns speculative decoding off for this request.
    speculative: bool | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # The legacy spelling of tools and tool_choice (one call at most).
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["none", "auto"] | FunctionName | None = None
    # Thinking: OpenAI's effort (its values are checked by ``reasoning``, which
    # names them in the 400), vLLM's template switches, and llmkit's own switch.
    reasoning_effort: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    think: bool | None = None

    def image_refs(self) -> list[ImageRef]:
        """Where the messages' images are, in order (``api.images`` reads them)."""
        return [
            ImageRef(part.image_url.url, f"messages.{i}.content.{j}.image_url.url")
            for i, m in enumerate(self.messages)
            if isinstance(m.content, list)
            for j, part in enumerate(m.content)
            if isinstance(part, ImagePart)
        ]

    def sizes(self) -> Sizes:
        """What ``api.limits`` bounds, counted before anything is built."""
        functions = [t.function for t in self.tools or ()] + list(self.functions or ())
        fmt = self.response_format
        schema = (fmt.json_schema or {}).get("schema") if fmt is not None else None
        return Sizes(
            n=self.n or 1,
            messages=len(self.messages),
            stop=stops(self.stop),
            tools=len(functions),
            tools_param="tools" if self.tools else "functions",
            images=len(self.image_refs()),
            schemas=(
                ("tools" if self.tools else "functions", [f.parameters for f in functions]),
                ("response_format", [schema]),
            ),
        )


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool | None = False
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None

    def sizes(self) -> Sizes:
        """What ``api.limits`` bounds, counted before anything is built; ``best_of``
        counts as choices too (it must equal ``n``)."""
        p = self.prompt
        prompts = 1 if isinstance(p, str) or all(isinstance(x, int) for x in p) else len(p)
        best = self.best_of is not None and self.best_of > (self.n or 1)
        return Sizes(
            n=self.best_of if best else self.n or 1,  # type: ignore[arg-type]
            n_param="best_of" if best else "n",
            stop=stops(self.stop),
            inputs=prompts,
            inputs_param="prompt",
        )


# -- responses ------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0  # of completion_tokens, those that were thinking


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


FinishReason = Literal["stop", "length", "tool_calls", "function_call"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    # The thinking apart from the answer (DeepSeek's and vLLM's name); absent when none.
    reasoning_content: str | None = None

    @model_serializer(mode="wrap")
    def _omit_no_calls(self, handler: Any) -> dict[str, Any]:
        # content and refusal are nullable in the spec; the calls are absent, not null.
        out = handler(self)
        for key in ("tool_calls", "function_call", "reasoning_content"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


class TopLogprob(BaseModel):
    token: str  # the token's text; a piece of a character written as its bytes ("\\xe2")
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo
    system_fingerprint: str = SYSTEM_FINGERPRINT


class ToolCallChunk(Omitting):
    """A piece of a streamed call: index, id, type and name first, then arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCall | None = None


class ChoiceDelta(Omitting):
    # The spec's delta has no nullable role: an absent key, not null.
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None  # a piece of the thinking
    tool_calls: list[ToolCallChunk] | None = None
    function_call: FunctionCall | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageInfo | None = None
    system_fingerprint: str = SYSTEM_FINGERPRINT


class CompletionLogprobs(BaseModel):
    """The legacy shape: parallel lists, one entry per token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]  # where each token starts in the choice's text, in characters


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None
    system_fingerprint: str = SYSTEM_FINGERPRINT


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmkit"
    # vLLM reports this too; clients use it to size requests.
    max_model_len: int | None = None
    # vLLM's field for a LoRA adapter served as a model: the base model it runs on.
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
    # llmkit's own: the error's fields (``LlmkitError.wire_fields``), beside OpenAI's
    # four keys rather than among them, so a client rebuilds the same exception.
    details: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _omit_no_details(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        if out.get("details") is None:
            out.pop("details", None)
        return out
