"""The engine-neutral vocabulary every layer shares.

Both API dialects translate their wire models to and from these types, and every
engine speaks only these. They are plain frozen values: no I/O, no wire format,
no ids (identity is the conversation store's business).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]
# What a served model can do, in the words Ollama's ``capabilities`` uses.
Capability = Literal["completion", "embedding", "thinking", "rerank", "vision"]
# How hard a reasoning model thinks: a level its template takes (gpt-oss), or a
# thinking budget (``GenerateRequest.reasoning_budget``) where it takes none.
Effort = Literal["low", "medium", "high"]
# "auto": the model answers in text or calls tools; "none": tools are not offered;
# "required": it must call one or more (``GenerateRequest.tool_name``: that one).
ToolChoice = Literal["auto", "none", "required"]


@dataclass(frozen=True)
class Tool:
    """A function the model may call; ``parameters_json`` is its arguments' JSON
    Schema, serialised (kept as text so the type stays hashable and frozen)."""

    name: str
    description: str = ""
    parameters_json: str = '{"type": "object", "properties": {}}'
    strict: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A call the model made (in a reply) or made earlier (in the history)."""

    id: str
    name: str
    arguments_json: str  # a JSON object, serialised


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a call as a stream carries it: the call's first piece has
    ``id`` and ``name``, later ones append to its ``arguments`` text."""

    index: int  # the call's position among the reply's calls
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Image:
    """An image a user turn carries, already decoded from its wire form (a data
    URI, base64, a fetched URL) and checked by the API layer: a known format,
    within the size limits. ``sha256`` (of ``data``) is its identity: the
    engine's cache of encoded images and the store's copy are keyed by it."""

    data: bytes
    mime: str  # "image/png", "image/jpeg", "image/webp", "image/gif"
    sha256: str
    width: int
    height: int
    # OpenAI's ``detail``; an engine whose projector has one resolution ignores it.
    detail: Literal["auto", "low", "high"] = "auto"


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    # An assistant turn's calls (its content may then be empty).
    tool_calls: tuple[ToolCall, ...] = ()
    # A "tool" message answers the call with this id.
    tool_call_id: str | None = None
    # An assistant turn's thinking (a reasoning model's), apart from its content;
    # the chat template decides whether an earlier turn's is shown to the model.
    reasoning: str = ""
    # A user turn's images, in order; the model sees them before ``content``
    # (as Ollama's ``images`` and most vision chat templates place them).
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token. ``temperature == 0`` means greedy.

    A field left None was not given: a request says only what it sets, so that
    the served model's Modelfile (``models/modelfile.py``) can fill the rest
    before the dialect's defaults do (``GenerateRequest.settled``). An engine
    sees every field filled but ``seed`` (None there: a random one).
    """

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # 0 disables top-k
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()
    # Constrained output: "json" makes the reply parse as JSON; with ``json_schema``
    # (a JSON Schema document, serialised) it must also match the schema.
    response_format: Literal["text", "json"] = "text"
    json_schema: str | None = None

    def over(self, base: SamplingParams) -> SamplingParams:
        """These values, and ``base``'s where these are not given."""
        taken = {
            f: getattr(base, f)
            for f in _SAMPLED
            if getattr(self, f) is None and getattr(base, f) is not None
        }
        return replace(self, **taken) if taken else self


# The fields a Modelfile's parameters and a dialect's defaults may fill.
_SAMPLED = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "repeat_last_n",
)

# What sampling is where neither a request, its model nor its dialect says otherwise.
DEFAULT_SAMPLING = SamplingParams(
    temperature=0.8,
    top_p=1.0,
    top_k=0,
    min_p=0.0,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    repeat_penalty=1.0,
    repeat_last_n=64,
)


@dataclass(frozen=True)
class GenerateRequest:
    """One generation: either chat ``messages`` (the engine applies the model's own
    chat template) or a raw ``prompt`` (text, or token ids), never both."""

    messages: tuple[Message, ...] | None = None
    prompt: str | tuple[int, ...] | None = None
    # What the request set (None: not given), and what its dialect gives the rest
    # once the served model's Modelfile has had its say (``settled``).
    sampling: SamplingParams = field(default_factory=SamplingParams)
    defaults: SamplingParams = DEFAULT_SAMPLING
    # None: whatever is left of the context after the prompt.
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    # Keep going past end-of-generation tokens (benchmarks want exact lengths).
    ignore_eos: bool = False
    # A per-request context smaller than the engine's (Ollama's ``num_ctx``): prompt
    # plus reply must fit in it. None: the engine's whole context.
    context_limit: int | None = None
    # Functions the model may call (chat only), and whether and how it must call them.
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    tool_name: str | None = None  # with "required": the one function to call
    parallel_tool_calls: bool = True  # False: at most one call per reply
    # Log-probabilities: None, none; k (0..20), each reply token's and the k likeliest
    # at its position (``Chunk.logprobs``).
    logprobs: int | None = None
    # Reasoning models. ``think``: None, the model's own default; False, no thinking
    # where the family can switch it off; True, thinking (refused by a model that
    # cannot think). ``effort``: how hard, where given. ``reasoning_budget``: the
    # most tokens the thinking may take before the engine closes it and the answer
    # follows (None: no limit but ``max_tokens``, which counts thinking and answer).
    think: bool | None = None
    effort: Effort | None = None
    reasoning_budget: int | None = None
    # Speculative decoding, where the engine does it: False, off for this request;
    # None, the server's choice. It changes speed only, never the reply.
    speculative: bool | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("GenerateRequest needs exactly one of messages or prompt")
        if self.tool_name is not None and self.tool_choice != "required":
            raise ValueError("tool_name goes with tool_choice 'required'")

    def settled(self) -> GenerateRequest:
        """This request with every sampling value it leaves out taken from ``defaults``."""
        sampling = self.sampling.over(self.defaults)
        return self if sampling is self.sampling else replace(self, sampling=sampling)

    @property
    def offers_tools(self) -> bool:
        """Whether the model is told about tools (and its calls are looked for)."""
        return bool(self.tools) and self.tool_choice != "none"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # prompt tokens whose KV cache was reused from an earlier request
    cached_tokens: int = 0
    # completion tokens that were thinking (a reasoning model's), not the answer
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Logprob:
    """A token's log-probability under the model at its position; for a token of
    the reply, ``top`` holds the likeliest tokens there, likeliest first."""

    token_id: int  # -1 where the engine cannot tell (a remote server)
    piece: bytes  # the bytes the token adds to the text (part of a character, for some)
    logprob: float
    top: tuple[Logprob, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of a generation as it is produced.

    ``text`` never ends inside a multi-byte character nor holds part of a stop
    string. The last chunk of a generation carries ``finish_reason`` and ``usage``.
    """

    text: str = ""
    # Thinking (a reasoning model's), apart from ``text``, which is the answer;
    # the family's markers (``<think>``...) appear in neither.
    reasoning: str = ""
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    # Calls found in the output; their markup never appears in ``text``.
    tool_calls: tuple[ToolCallDelta, ...] = ()
    # On a last chunk that ends at a stop string: which one (Anthropic's replies say it).
    stop_sequence: str | None = None
    # With ``GenerateRequest.logprobs``: the tokens whose text this chunk (or an
    # earlier one) carries, in order; held back with their text, dropped with a stop string.
    logprobs: tuple[Logprob, ...] = ()


@dataclass(frozen=True)
class EngineInfo:
    """What an engine serves, for model listings and the start-up log."""

    engine: str  # "llama.cpp", "transformers", ...
    model: str  # a path or repo id
    context_length: int
    details: dict[str, str | int] = field(default_factory=dict)
    # What model listings show (Ollama's tags/show/ps); empty when unknown.
    format: str = ""  # "gguf", "safetensors"
    family: str = ""  # the architecture: "llama", "qwen2"
    parameter_count: int = 0
    parameter_size: str = ""  # as people say it: "135M", "7B"
    quantization: str = ""  # "Q4_1", "F16", "bfloat16"
    size_bytes: int = 0  # weights in memory
    license: str = ""
    chat_template: str = ""
    metadata: dict[str, str] = field(default_factory=dict)  # e.g. the GGUF header
    capabilities: tuple[Capability, ...] = ("completion",)


@dataclass(frozen=True)
class EmbedRequest:
    """Inputs (texts, or token ids) to turn into one vector each, in order."""

    inputs: tuple[str | tuple[int, ...], ...]
    # Cut an input longer than the context to fit instead of refusing it (Ollama's rule).
    truncate: bool = False
    # Keep the first ``dimensions`` components (then re-normalise); None: all of them.
    dimensions: int | None = None
    # L2-normalise each vector (OpenAI and Ollama's /api/embed do; /api/embeddings doesn't).
    normalize: bool = True
    # A per-request context smaller than the engine's (Ollama's ``num_ctx``).
    context_limit: int | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("EmbedRequest needs at least one input")


@dataclass(frozen=True)
class EmbedResult:
    embeddings: tuple[tuple[float, ...], ...]  # one per input, in the request's order
    prompt_tokens: int  # tokens read, over all inputs (after any truncation)


@dataclass(frozen=True)
class RerankRequest:
    """A query and the documents to score against it, each (query, document) pair
    on its own, as a cross-encoder reads them."""

    query: str
    documents: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.documents:
            raise ValueError("RerankRequest needs at least one document")


@dataclass(frozen=True)
class RerankResult:
    scores: tuple[float, ...]  # one per document, in the request's order (not sorted)
    prompt_tokens: int  # tokens read, over all pairs
