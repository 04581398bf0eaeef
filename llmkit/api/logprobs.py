"""Log-probabilities on the wire, what both dialects share: a token's text, and
the request checks.

Engines hand each token's bytes (``core.types.Logprob.piece``); a token that is
only part of a character (a byte of an emoji) has no text of its own, so its
bytes are written as escapes (``"\\xf0\\x9f"``), as OpenAI writes them; the
``bytes`` field beside it carries them exactly.
"""

from __future__ import annotations

from llmkit.core.types import GenerateRequest
from llmkit.engines.base import Engine
from llmkit.errors import InvalidRequestError


def token_text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="backslashreplace")


def check_range(value: int, high: int, param: str) -> int:
    if not 0 <= value <= high:
        raise InvalidRequestError(
            f"{param} must be between 0 and {high}; got {value}.", param=param
        )
    return value


def refuse_logprobs(engine: Engine, reqs: list[GenerateRequest]) -> None:
    """A 400 for log-probabilities asked of an engine that cannot give them, rather
    than a reply without them."""
    if engine.supports_logprobs or all(r.logprobs is None for r in reqs):
        return
    raise InvalidRequestError(
        f"logprobs are not supported by the {engine.info.engine} engine; serve the model "
        "with --engine llamacpp or transformers for them.",
        param="logprobs",
    )
