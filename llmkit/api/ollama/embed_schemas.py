"""Wire models of Ollama's two embedding endpoints: ``/api/embed`` (a list of
inputs, normalised vectors) and the older ``/api/embeddings`` (one prompt, the
vector as the model gives it), as ``docs/api.md`` describes them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from llmkit.api.limits import Sizes
from llmkit.api.ollama.schemas import OllamaRequest, Options


class EmbedFields(OllamaRequest):
    """What both endpoints take besides their input."""

    model: str
    options: Options | None = None  # num_ctx is honoured; the rest concern generation
    keep_alive: float | str | None = None


class EmbedRequest(EmbedFields):
    input: str | list[str] | None = None
    truncate: bool = True  # cut an input longer than the context instead of refusing it
    dimensions: int | None = Field(default=None, ge=1)

    def sizes(self) -> Sizes:
        return Sizes(inputs=len(self.input) if isinstance(self.input, list) else 1)


class EmbeddingsRequest(EmbedFields):
    prompt: str | None = ""


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int  # nanoseconds, as everywhere in Ollama's API
    load_duration: int
    prompt_eval_count: int


class EmbeddingsResponse(BaseModel):
    embedding: list[float]
