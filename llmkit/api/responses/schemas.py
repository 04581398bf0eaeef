"""Wire models of OpenAI's Responses API (``/v1/responses``): the request.

The items of ``input``, the ``tools`` and ``text.format`` are kept as JSON values
here and read by ``convert``, which names the exact field of a bad one in its
400 (``input.2.content.0.type``), as OpenAI does. The objects answered (the
``Response``, its items, the stream events) are plain JSON built by ``convert``
and ``stream``, checked against OpenAI's published schema by the tests.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmkit.api.limits import Sizes
from llmkit.api.openai.schemas import OpenAIRequest


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
    user: str | None = None

    def sizes(self) -> Sizes:
        """What ``api.limits`` bounds, counted before anything is built: input items
        count as messages."""
        tools = self.tools or []
        fmt = self.text.format if self.text is not None else None
        return Sizes(
            messages=len(self.input) if isinstance(self.input, list) else 1,
            messages_param="input",
            tools=len(tools),
            schemas=(
                ("tools", [t.get("parameters") for t in tools if isinstance(t, dict)]),
                ("text.format", [fmt.schema_ if fmt is not None else None]),
            ),
        )
