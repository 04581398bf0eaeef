"""Wire models of the conversations API (``/conversations``): pydantic on the wire,
the store's ``Conversation`` and ``Entry`` values inside."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from llmkit.api.images import ImageRef
from llmkit.core.types import Image
from llmkit.memory.records import Conversation, Entry


class ImageOut(BaseModel):
    sha256: str = Field(description="The SHA-256 of the image's bytes: its identity.")
    mime: str
    width: int
    height: int
    url: str = Field(description="Where its bytes are: GET /conversations/images/{sha256}.")

    @classmethod
    def of(cls, i: Image) -> ImageOut:
        return cls(
            sha256=i.sha256,
            mime=i.mime,
            width=i.width,
            height=i.height,
            url=f"/conversations/images/{i.sha256}",
        )


class MessageOut(BaseModel):
    id: int
    role: str
    content: str
    interrupted: bool = Field(description="The reply was cut short (stopped, disconnected).")
    created_at: datetime
    reasoning: str | None = Field(
        default=None,
        description="A reasoning model's thinking before this reply (never in content).",
    )
    images: list[ImageOut] = Field(default_factory=list, description="A user turn's images.")
    item_id: str | None = Field(default=None, description="Its id in /v1/conversations.")
    item: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Written through OpenAI's APIs and not a plain message (a function or MCP call, "
            "its output, reasoning): the item itself; content is then its text."
        ),
    )
    tool_calls: list[dict[str, str | None]] | None = Field(
        default=None,
        description="An assistant turn's MCP tool calls: id, server, name, arguments (JSON).",
    )
    tool_call_id: str | None = Field(
        default=None, description="A tool result (role 'tool'): the call it answers."
    )
    tool_error: bool | None = Field(
        default=None, description="A tool result: the call failed or was denied."
    )

    @classmethod
    def of(cls, e: Entry) -> MessageOut:
        return cls(
            images=[ImageOut.of(i) for i in e.images],
            item_id=e.item_id or None,
            item=e.item,
            id=e.id,
            role=e.role,
            content=e.content,
            interrupted=e.interrupted,
            created_at=e.created_at,
            reasoning=e.reasoning or None,
            tool_calls=[dict(c) for c in e.tool_calls] or None,
            tool_call_id=e.tool_call_id,
            tool_error=e.tool_error if e.role == "tool" else None,
        )


class ConversationOut(BaseModel):
    name: str
    id: str = Field(default="", description="Its id in /v1/conversations (conv_...).")
    model: str | None
    url: str | None = Field(description="The server the conversation was last used with.")
    system: str | None
    memory: str = Field(description="buffer, window:N, tokens or summary[:N]")
    temperature: float | None
    max_tokens: int | None
    turns: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Conversation) -> ConversationOut:
        return cls(
            name=c.name,
            id=c.id,
            model=c.model,
            url=c.url,
            system=c.system,
            memory=c.memory,
            temperature=c.temperature,
            max_tokens=c.max_tokens,
            turns=c.turns,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class ConversationDetail(ConversationOut):
    busy: bool = Field(default=False, description="A reply is being generated now.")
    summary: str | None = None
    messages: list[MessageOut] = []


class ConversationList(BaseModel):
    object: str = "list"
    data: list[ConversationOut]


class Settings(BaseModel):
    """What a conversation asks of the model; a field left out is left as it is."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    system: str | None = None
    memory: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (an explicit null clears one)."""
        return {k: getattr(self, k) for k in self.model_fields_set if k != "name"}


class NewConversation(Settings):
    name: str | None = Field(default=None, description="Default: a new chat-<time> name.")


class ConversationPatch(Settings):
    name: str | None = Field(default=None, description="A new name (rename).")


class UserTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # images before content: content's check reads them (a turn needs one or the other)
    images: list[str] | None = Field(
        default=None,
        description="Images as data URIs (data:image/png;base64,...) or bare base64; PNG, "
        "JPEG, WebP or GIF. On a resend, left out (null) keeps the turn's images.",
    )
    content: str = ""
    mcp: list[str] | None = Field(
        default=None,
        max_length=32,
        description="Configured MCP servers (GET /mcp/servers) whose tools this turn may use.",
    )
    tool_choice: str | dict[str, str] | None = Field(
        default=None,
        description="With mcp: 'auto' (default), 'required' or {'name': tool}, for the "
        "model's first step.",
    )

    @field_validator("content")
    @classmethod
    def _something(cls, content: str, info: ValidationInfo) -> str:
        if not content and not info.data.get("images"):
            raise ValueError("a turn needs content (or images)")
        return content

    def image_refs(self) -> list[ImageRef]:
        return [
            ImageRef(uri, f"images.{k}", kind="base64") for k, uri in enumerate(self.images or ())
        ]


class ApprovalAnswer(BaseModel):
    """``POST /conversations/{name}/approve``: the user's answer to a call waiting."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, description="The call's id.")
    approve: bool


class ReplyUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = Field(default=0, description="Of the completion: thinking.")
    total_tokens: int
    tokens_per_second: float | None = Field(
        description="Reply tokens over the time from the first to the last one."
    )


class ReplyDone(BaseModel):
    """The stream's last event (``event: done``)."""

    message: MessageOut | None
    finish_reason: str | None
    usage: ReplyUsage | None


SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "Server-sent events: `user` (the stored user turn, a MessageOut), then "
            '`reasoning` ({"text"}) per piece of a reasoning model\'s thinking, '
            '`delta` ({"text"}) per piece of the answer; with MCP tools `tool_call` '
            '({"id", "server", "name", "arguments"}), `approval` (the same: the call '
            'waits for POST .../approve), `tool_result` ({"id", "server", "name", '
            '"output", "error"}); then `done` (ReplyDone), or '
            '`error` ({"error": {...}}) if the reply failed; a reply cut short is '
            "stored marked interrupted."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    409: {"description": "A reply is already being generated in this conversation."},
}
