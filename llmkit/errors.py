"""The one exception tree of llmkit.

Every layer raises these; each API dialect renders them once, in its own error
shape, and the client turns HTTP errors back into them.

    LlmkitError
    ├── ClientError                  the caller can fix it (4xx)
    │   ├── InvalidRequestError      400: a field is wrong (``param`` names it)
    │   │   └── ContextLengthError   400: prompt + completion do not fit the context
    │   ├── AuthenticationError      401: missing or wrong API key
    │   └── ModelNotFoundError       404: no served model has that name
    └── ServerError                  the server can't do it right now (5xx)
        ├── EngineError              500: the engine failed
        ├── ServerBusyError          503: the queue is full, retry later
        └── UpstreamError            502: the server we forward to failed or is down
"""

from __future__ import annotations


class LlmkitError(Exception):
    status: int = 500
    #: a short machine-readable code, as OpenAI's ``error.code``
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ClientError(LlmkitError):
    status = 400


class InvalidRequestError(ClientError):
    status = 400


class ContextLengthError(InvalidRequestError):
    code = "context_length_exceeded"

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


class AuthenticationError(ClientError):
    status = 401
    code = "invalid_api_key"


class ModelNotFoundError(ClientError):
    status = 404
    code = "model_not_found"

    def __init__(self, model: str, available: list[str]) -> None:
        names = ", ".join(available) or "none"
        super().__init__(
            f"The model '{model}' does not exist on this server. Served models: {names}.",
            param="model",
        )
        self.model = model
        self.available = available


class ServerError(LlmkitError):
    status = 500


class EngineError(ServerError):
    status = 500


class ServerBusyError(ServerError):
    status = 503
    code = "server_busy"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(ServerError):
    status = 502
    code = "upstream_error"
