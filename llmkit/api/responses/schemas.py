"""Wire models of OpenAI's Responses API (``/v1/responses``): the request.

The items of ``input``, the ``tools`` and ``text.format`` are kept as JSON values
here and read by ``convert`` (``input`` by ``input_items``), which names the
exact field of a bad one in its 400 (``input.2.content.0.type``), as OpenAI
does. The objects answered (the ``Response``, its items, the stream events) are
plain JSON built by ``replies`` and ``stream``, checked against OpenAI's
published schema by the tests.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmkit.api.images import ImageRef
from llmkit.api.limits import Sizes
from llmkit.api.openai.schemas import OpenAIRequest
from llmkit.errors import InvalidRequestError


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_schema", "json_object"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: TextFormat | None = None


class ReasoningConfig(BaseModel):
    """``reasoning``: the values are checked by ``reasoning``, whose 400 names them."""

    model_config = ConfigDict(extra="allow")
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None  # the deprecated name of summary


class ResponseCreateRequest(OpenAIRequest):
    model: str
    input: str | list[Any]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    include: list[str] | None = None  # "reasoning.encrypted_content" is the one read
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    stream: bool | None = False
    store: bool | None = True
    previous_response_id: str | None = None
    # a conversation's id ("conv_...") or {"id": ...}: its items are the history
    conversation: str | dict[str, Any] | None = None
    user: str | None = None

    def image_refs(self) -> list[ImageRef]:
        """Where the input's images are (``input_image`` parts), for ``api.images``."""
        return input_image_refs(self.input)

    def conversation_id(self) -> str | None:
        """The id ``conversation`` names; a 400 for a malformed one, or one sent
        with ``previous_response_id`` (OpenAI allows one or the other)."""
        conv = self.conversation
        if conv is None:
            return None
        if isinstance(conv, dict):
            conv = conv.get("id")
        if not isinstance(conv, str) or not conv:
            raise InvalidRequestError(
                "conversation must be a conversation's id or {'id': ...}.", param="conversation"
            )
        if self.previous_response_id is not None:
            raise InvalidRequestError(
                "Mutually exclusive parameters: send either previous_response_id or "
                "conversation, not both.",
                param="conversation",
            )
        return conv

    def sizes(self) -> Sizes:
        """What ``api.limits`` bounds, counted before anything is built: input items
        count as messages."""
        tools = self.tools or []
        fmt = self.text.format if self.text is not None else None
        return Sizes(
            messages=len(self.input) if isinstance(self.input, list) else 1,
            messages_param="input",
            images=len(self.image_refs()),
            images_param="input",
            tools=len(tools),
            schemas=(
                ("tools", [t.get("parameters") for t in tools if isinstance(t, dict)]),
                ("text.format", [fmt.schema_ if fmt is not None else None]),
            ),
        )


def input_image_refs(value: str | list[Any]) -> list[ImageRef]:
    """The ``input_image`` parts of ``input``'s user messages, in order (for
    ``api.images``); malformed ones are left to ``read_input``'s 400."""
    refs = []
    for i, item in enumerate(value if isinstance(value, list) else ()):
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        content = item.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and part.get("type") == "input_image":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if isinstance(url, str) and url:
                    refs.append(ImageRef(url, f"input.{i}.content.{j}.image_url"))
    return refs
