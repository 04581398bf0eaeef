"""The one exception tree of llmkit.

Every layer raises these; each API dialect renders them once, in its own error
shape, and the client turns HTTP errors back into them.

    LlmkitError
    ├── ClientError                  the caller can fix it (4xx)
    │   ├── InvalidRequestError      400: a field is wrong (``param`` names it)
    │   │   ├── ContextLengthError   400: prompt + completion do not fit the context
    │   │   └── VisionUnsupportedError  400: images sent to a model that takes none
    │   ├── AuthenticationError      401: missing or wrong API key
    │   ├── ForbiddenError           403: a foreign Host or Origin (DNS rebinding, CSRF)
    │   ├── PayloadTooLargeError     413: the request body is over the limit
    │   ├── RateLimitError           429: too many requests for this key; retry later
    │   ├── NotFoundError            404: no such thing (what a client gets back)
    │   │   ├── ModelNotFoundError   404: no served model has that name
    │   │   ├── ConversationNotFoundError  404: no stored conversation has that name
    │   │   │   └── ConversationIdNotFoundError  404: nor that id (``conv_...``)
    │   │   ├── ConversationItemNotFoundError  404: the conversation has no such item
    │   │   └── ResponseNotFoundError  404: no stored response (Responses API) has that id
    │   ├── ConversationExistsError  409: a stored conversation already has that name
    │   ├── ConversationBusyError    409: a reply is already under way in that conversation
    │   ├── ModelSpecError           400: a model name/path/repo names nothing usable here
    │   ├── ConfigError              400: serve settings or a config file that cannot work
    │   └── InsufficientMemoryError  400: the model would not fit in memory
    └── ServerError                  the server can't do it right now (5xx)
        ├── EngineError              500: the engine failed
        │   └── ModelFailedError     503: the model failed on this request; the engine goes on
        ├── ServerBusyError          503: the queue is full, retry later
        ├── UpstreamError            502: the server we forward to failed or is down
        │   ├── UnreachableError     502: nothing answers at that address
        │   ├── UpstreamTimeoutError 504: it answered, then fell silent too long
        │   └── PullError            502: no source could deliver the model
        ├── StoreError               500: the conversation store's database failed
        └── DiskFullError            507: no space left where llmkit writes

An error crosses HTTP and comes back as itself: a class with a ``code`` names the
attributes that say what went wrong (``fields``); the dialects put ``wire_fields()``
in their error bodies beside the message, and ``error_from_code`` rebuilds the
same class with the same fields on the client's side. This module is the one
place that knows which code is which class and which fields it carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self


class LlmkitError(Exception):
    status: int = 500
    #: a short machine-readable code, as OpenAI's ``error.code``
    code: str | None = None
    #: the attributes (JSON values) an error body carries so a client can rebuild it
    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def wire_fields(self) -> dict[str, Any]:
        """What a dialect puts in the error body beside the message, for ``from_wire``."""
        return {name: getattr(self, name) for name in self.fields}

    @classmethod
    def from_wire(cls, message: str, *, param: str | None, fields: Mapping[str, Any]) -> Self:
        """The error a server described. The message stays as the server wrote it
        (each dialect may word one its own way), so the constructor, which words
        it, is passed by; the fields are set as they came."""
        err = cls.__new__(cls)
        LlmkitError.__init__(err, message, param=param)
        for name in cls.fields:
            setattr(err, name, fields[name])
        return err


class ClientError(LlmkitError):
    status = 400


class InvalidRequestError(ClientError):
    status = 400


class ContextLengthError(InvalidRequestError):
    code = "context_length_exceeded"
    fields = ("prompt_tokens", "max_tokens", "context_length")

    def __init__(
        self,
        *,
        prompt_tokens: int,
        max_tokens: int | None,
        context_length: int,
        param: str | None = "messages",
    ) -> None:
        if max_tokens is None:
            message = (
                f"This model's maximum context length is {context_length} tokens. However, "
                f"your prompt has {prompt_tokens} tokens, which leaves no room for a reply. "
                "Please shorten the prompt."
            )
        else:
            message = (
                f"This model's maximum context length is {context_length} tokens. However, "
                f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"prompt, {max_tokens} in max_tokens for the completion). Please reduce the "
                "length of the prompt or of max_tokens."
            )
        super().__init__(message, param=param)
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length


class ThinkingUnsupportedError(InvalidRequestError):
    """Thinking was asked of a model that cannot think (Ollama answers this with
    its own words: ``"MODEL" does not support thinking``)."""

    def __init__(self, model: str, *, param: str | None = "think") -> None:
        super().__init__(f'"{model}" does not support thinking', param=param)
        self.model = model

    fields = ("model",)


class VisionUnsupportedError(InvalidRequestError):
    """Images were sent to a model that cannot see them (a text-only model, or a
    vision model served without its projector); ``supports``: what it can do
    (its capabilities, as listings show them)."""

    code = "vision_unsupported"
    fields = ("model", "supports")

    def __init__(self, model: str, supports: list[str], *, param: str | None = "messages") -> None:
        can = ", ".join(supports) or "text"
        super().__init__(
            f"The model '{model}' does not take images: it supports {can}. Send text only, "
            "or serve a vision model with its projector (--mmproj).",
            param=param,
        )
        self.model = model
        self.supports = supports


class AuthenticationError(ClientError):
    status = 401
    code = "invalid_api_key"


class ForbiddenError(ClientError):
    status = 403
    code = "forbidden"


class PayloadTooLargeError(ClientError):
    status = 413
    code = "payload_too_large"


class RateLimitError(ClientError):
    status = 429
    code = "rate_limit_exceeded"
    fields = ("retry_after",)

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(ClientError):
    status = 404


class ModelNotFoundError(NotFoundError):
    status = 404
    code = "model_not_found"
    fields = ("model", "available")

    def __init__(self, model: str, available: list[str]) -> None:
        names = ", ".join(available) or "none"
        super().__init__(
            f"The model '{model}' does not exist on this server. Served models: {names}.",
            param="model",
        )
        self.model = model
        self.available = available


class ConversationNotFoundError(NotFoundError):
    status = 404
    code = "conversation_not_found"
    fields = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(
            f"No conversation named '{name}'. `llmkit sessions list` shows the stored ones.",
            param="name",
        )
        self.name = name


class ConversationIdNotFoundError(ConversationNotFoundError):
    """An id (``conv_...``) of OpenAI's Conversations API that names no conversation."""

    def __init__(self, conversation_id: str, *, param: str | None = None) -> None:
        super().__init__(conversation_id)
        self.message = (
            f"No conversation has the id '{conversation_id}' (nor that name): it was never "
            "created or was deleted. GET /conversations lists the stored ones."
        )
        self.param = param


class ConversationItemNotFoundError(NotFoundError):
    status = 404
    code = "item_not_found"
    fields = ("conversation_id", "item_id")

    def __init__(self, conversation_id: str, item_id: str, *, param: str = "item_id") -> None:
        super().__init__(
            f"Conversation '{conversation_id}' has no item with the id '{item_id}'.", param=param
        )
        self.conversation_id = conversation_id
        self.item_id = item_id


class ResponseNotFoundError(NotFoundError):
    status = 404
    code = "response_not_found"
    fields = ("response_id",)

    def __init__(self, response_id: str, *, param: str | None = None) -> None:
        super().__init__(
            f"No stored response has the id '{response_id}': it was never stored "
            "(store: false), was deleted, or was evicted (--responses-max-count, "
            "--responses-max-age).",
            param=param,
        )
        self.response_id = response_id


class ConversationExistsError(ClientError):
    status = 409
    code = "conversation_exists"
    fields = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(
            f"A conversation named '{name}' already exists. Choose another name, or "
            f"remove it first with `llmkit sessions rm {name}`.",
            param="name",
        )
        self.name = name


class ConversationBusyError(ClientError):
    status = 409
    code = "conversation_busy"
    fields = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Conversation '{name}' is already generating a reply (in another tab or "
            "client). Wait for it to end, or stop it, then send again.",
            param="name",
        )
        self.name = name


class ServerError(LlmkitError):
    status = 500


class EngineError(ServerError):
    status = 500


class ModelFailedError(EngineError):
    """The model failed while generating (a llama.cpp or torch error): the requests
    it was running end with this, and the engine serves the next ones."""

    status = 503
    code = "model_failed"


class ServerBusyError(ServerError):
    status = 503
    code = "server_busy"
    fields = ("retry_after",)

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(ServerError):
    status = 502
    code = "upstream_error"


class StoreError(ServerError):
    """The conversation store's database failed (locked too long, disk full, gone).

    The transaction was rolled back: the conversation is as it was before the call.
    """

    status = 500
    code = "store_error"


class DiskFullError(ServerError):
    """The disk llmkit writes to is full; what was written before is kept (a pull
    resumes from it once there is room)."""

    status = 507
    code = "disk_full"


class ModelSpecError(ClientError):
    """A ``--model`` / ``NAME`` that is not in the catalog, not a file, or not a
    format the chosen engine can load; the message says what to do instead."""

    code = "model_unavailable"


class ConfigError(ClientError):
    """Serve settings that cannot work together, or a config file that cannot be read;
    the message names the setting (and the file) and what it takes instead."""

    code = "invalid_config"


class InsufficientMemoryError(ClientError):
    """The model, its KV cache and runtime overhead would not fit; raised before
    loading, with the numbers and what to change (``estimate`` holds them)."""

    code = "insufficient_memory"
    estimate: object = None  # not sent: a client rebuilding this error has the message only

    def __init__(self, message: str, *, estimate: object = None) -> None:
        super().__init__(message)
        self.estimate = estimate


class UnreachableError(UpstreamError):
    """No connection at all (refused, no route, DNS): distinct from a server that
    answered with an error."""


class UpstreamTimeoutError(UpstreamError):
    """The server we forward to accepted the request, then said nothing for longer
    than we wait (``upstream_timeout``): the request is ended, not left hanging."""

    status = 504
    code = "upstream_timeout"


class PullError(UpstreamError):
    """Every source failed; ``attempts`` pairs each source with why."""

    code = "pull_failed"
    fields = ("attempts",)

    def __init__(self, message: str, *, attempts: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.attempts = attempts

    @classmethod
    def from_wire(cls, message: str, *, param: str | None, fields: Mapping[str, Any]) -> Self:
        # JSON has no tuples: the pairs come as lists
        pairs = [(str(source), str(why)) for source, why in fields["attempts"]]
        return super().from_wire(message, param=param, fields={"attempts": pairs})


def _coded() -> dict[str, type[LlmkitError]]:
    """Every class here that names its own code. One that only inherits a code
    (UnreachableError) comes back as the class it inherits it from: to a client,
    a server whose upstream is down is a failed upstream, not an unreachable one."""
    found = {}
    for cls in globals().values():
        if isinstance(cls, type) and issubclass(cls, LlmkitError) and cls.__dict__.get("code"):
            found[cls.code] = cls
    return found


def error_from_code(
    code: object, message: str, *, param: str | None = None, fields: object = None
) -> LlmkitError | None:
    """The error an error body's ``code`` names, rebuilt with the fields it carries.
    None when the code is not llmkit's, or a field is missing: another server may
    use the same code without them (OpenAI's ``context_length_exceeded`` says no
    numbers), and then the caller falls back on the HTTP status."""
    cls = _coded().get(code) if isinstance(code, str) else None
    given = fields if isinstance(fields, Mapping) else {}
    if cls is None or not set(cls.fields) <= set(given):
        return None
    return cls.from_wire(message, param=param, fields=given)
