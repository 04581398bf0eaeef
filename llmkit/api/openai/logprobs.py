"""Log-probabilities in OpenAI's words: what a request asks (chat's ``logprobs`` /
``top_logprobs``, completions' ``logprobs: N``), checked as OpenAI checks them,
and the two answer shapes, chat's list of token objects and completions' parallel
lists. Pure functions over core ``Logprob``s, like ``convert``."""

from __future__ import annotations

import codecs
from collections.abc import Iterable

from llmkit.api.logprobs import check_range, token_text
from llmkit.api.openai import schemas as s
from llmkit.core.types import Logprob
from llmkit.errors import InvalidRequestError

CHAT_MAX_TOP = 20  # OpenAI's limits
COMPLETION_MAX = 5


def from_chat(req: s.ChatCompletionRequest) -> int | None:
    """How many alternatives each token wants (``GenerateRequest.logprobs``)."""
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequestError("top_logprobs needs logprobs set to true.", param="top_logprobs")
    if not req.logprobs:
        return None
    return check_range(req.top_logprobs or 0, CHAT_MAX_TOP, "top_logprobs")


def from_completion(req: s.CompletionRequest) -> int | None:
    if req.logprobs is None:
        return None
    n = check_range(req.logprobs, COMPLETION_MAX, "logprobs")
    if req.echo:
        raise InvalidRequestError(
            "echo with logprobs is not supported: the prompt's own tokens are not scored.",
            param="echo",
        )
    return n


def _top(lp: Logprob) -> s.TopLogprob:
    return s.TopLogprob(token=token_text(lp.piece), logprob=lp.logprob, bytes=list(lp.piece))


def to_chat(entries: Iterable[Logprob]) -> s.ChoiceLogprobs:
    return s.ChoiceLogprobs(
        content=[
            s.TokenLogprob(**_top(e).model_dump(), top_logprobs=[_top(t) for t in e.top])
            for e in entries
        ]
    )


class CompletionOffsets:
    """Where each token starts in a choice's text, in characters, kept across the
    chunks of a stream (a character split over two tokens starts at the first)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chars = 0

    def to_completion(self, entries: Iterable[Logprob]) -> s.CompletionLogprobs:
        out = s.CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
        for e in entries:
            out.tokens.append(token_text(e.piece))
            out.token_logprobs.append(e.logprob)
            out.top_logprobs.append({token_text(t.piece): t.logprob for t in e.top})
            out.text_offset.append(self._chars)
            self._chars += len(self._decoder.decode(e.piece))
        return out
