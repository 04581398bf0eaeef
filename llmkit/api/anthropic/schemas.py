"""Wire models of Anthropic's Messages API (``/v1/messages``), as its reference
describes them.

Requests accept fields we don't know (``cache_control`` on blocks, ``container``:
clients send them routinely) and log them; responses are built the way
Anthropic's SDKs parse them.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from llmkit.api.images import ImageRef
from llmkit.api.limits import Sizes

log = logging.getLogger("llmkit.api.anthropic")


class AnthropicRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self) -> AnthropicRequest:
        if self.model_extra:
            log.info("ignored request fields: %s", ", ".join(sorted(self.model_extra)))
        return self


# -- requests -------------------------------------------------------------------


class Block(BaseModel):
    """One content block of a message; which fields count depends on ``type``
    (``text``, ``tool_use``, ``tool_result``; others are refused by ``convert``
    with a 400 naming the block, not by pydantic's wording)."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    # tool_use (in the assistant's turns)
    id: str | None = None
    name: str | None = None
    input: Any = None
    # tool_result (in the user's turns)
    tool_use_id: str | None = None
    content: str | list[Block] | None = None
    is_error: bool | None = None
    # thinking (in the assistant's turns; redacted_thinking carries ``data``, dropped)
    thinking: str | None = None
    signature: str | None = None
    # image (user turns): {"type": "base64", "media_type", "data"} or {"type": "url", "url"}
    source: dict[str, Any] | None = None


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolDefinition(BaseModel):
    """A client tool; ``input_schema`` is checked as a JSON Schema by ``api.tools``.
    A server tool (web search, code execution...) has a ``type`` and no schema."""

    model_config = ConfigDict(extra="allow")
    type: str | None = None
    name: str
    description: str | None = None
    input_schema: Any = None


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    user_id: str | None = None


class PromptFields(AnthropicRequest):
    """What a message and a token count share: everything that makes the prompt."""

    model: str
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[Block] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    # Checked by ``thinking``, whose 400s name the field and the values it takes.
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None

    def image_refs(self) -> list[ImageRef]:
        """Where the user turns' ``image`` blocks are, in order (for ``api.images``);
        a malformed source is left to ``convert``'s 400."""
        refs = []
        for i, m in enumerate(self.messages):
            if m.role != "user" or isinstance(m.content, str):
                continue
            for j, b in enumerate(m.content):
                ref = image_ref(b, f"messages.{i}.content.{j}") if b.type == "image" else None
                if ref is not None:
                    refs.append(ref)
        return refs

    def sizes(self) -> Sizes:
        """What ``api.limits`` bounds, counted before anything is built."""
        tools = self.tools or []
        return Sizes(
            images=len(self.image_refs()),
            messages=len(self.messages),
            stop=getattr(self, "stop_sequences", None) or (),
            stop_param="stop_sequences",
            tools=len(tools),
            schemas=(("tools", [t.input_schema for t in tools]),),
        )


class MessagesRequest(PromptFields):
    max_tokens: int = Field(ge=1)  # required, as Anthropic requires it
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: Metadata | None = None


class CountTokensRequest(PromptFields):
    pass


# -- responses ------------------------------------------------------------------


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class OutputTokensDetails(BaseModel):
    thinking_tokens: int  # of output_tokens, those that were thinking


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    output_tokens_details: OutputTokensDetails | None = None  # absent when nothing was thought

    @model_serializer(mode="wrap")
    def _omit_no_details(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        if out.get("output_tokens_details") is None:
            out.pop("output_tokens_details", None)
        return out


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ThinkingBlock | TextBlock | ToolUseBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class TokenCount(BaseModel):
    input_tokens: int


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail


def image_ref(b: Block, where: str) -> ImageRef | None:
    """Where an ``image`` block's image is: base64 data, or a URL; None when its
    source is neither (``convert`` says what is wrong)."""
    src = b.source or {}
    if src.get("type") == "base64" and isinstance(src.get("data"), str):
        return ImageRef(src["data"], f"{where}.source.data", kind="base64")
    if src.get("type") == "url" and isinstance(src.get("url"), str):
        return ImageRef(src["url"], f"{where}.source.url")
    return None
