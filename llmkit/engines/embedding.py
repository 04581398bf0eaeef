"""What every engine that embeds shares, as pure functions: inputs held to the
context (refused or cut), inputs packed into batches, and the vectors finished
(``dimensions`` cut, L2 normalisation).

The engines only tokenize and run the model; the rules users see (which input is
too long, what ``dimensions`` may be) are the same whichever engine answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from llmkit.errors import InvalidRequestError


def cannot_embed(engine: str, why: str = "") -> InvalidRequestError:
    """The 400 a model that cannot embed answers with."""
    return InvalidRequestError(
        f"This model cannot embed: the {engine} engine {why or 'does not compute embeddings'}. "
        "Serve a GGUF model with the llama.cpp engine to get embeddings.",
        param="model",
    )


def fit_inputs(seqs: list[list[int]], limit: int, *, truncate: bool) -> list[list[int]]:
    """Each input's tokens held to ``limit``: cut when ``truncate``, else refused
    with the input's index and its length; an input with no tokens is refused."""
    out = []
    for i, ids in enumerate(seqs):
        if not ids:
            raise InvalidRequestError(
                f"input[{i}] is empty; every input needs text.", param="input"
            )
        if len(ids) > limit:
            if not truncate:
                raise InvalidRequestError(
                    f"input[{i}] has {len(ids)} tokens, more than the {limit} tokens of this "
                    "model's embedding context; shorten it (or, in Ollama's API, let "
                    "truncate cut it).",
                    param="input",
                )
            ids = ids[:limit]
        out.append(ids)
    return out


def check_dimensions(dimensions: int | None, n_embd: int) -> None:
    if dimensions is not None and not 1 <= dimensions <= n_embd:
        raise InvalidRequestError(
            f"dimensions must be between 1 and {n_embd} (this model's embedding size); "
            f"got {dimensions}.",
            param="dimensions",
        )


def pack(lengths: Sequence[int], max_tokens: int, max_seqs: int) -> list[list[int]]:
    """Indices of the inputs in batches, in order: each batch holds at most
    ``max_seqs`` inputs and ``max_tokens`` tokens; a longer input goes alone."""
    batches: list[list[int]] = []
    room = 0
    for i, n in enumerate(lengths):
        if not batches or n > room or len(batches[-1]) >= max_seqs:
            batches.append([])
            room = max_tokens
        batches[-1].append(i)
        room -= n
    return batches


def l2_normalise(v: Sequence[float]) -> tuple[float, ...]:
    norm = math.sqrt(math.fsum(x * x for x in v))
    return tuple(v) if norm == 0 else tuple(x / norm for x in v)


def finish(
    vectors: Sequence[Sequence[float]], *, dimensions: int | None, normalize: bool
) -> tuple[tuple[float, ...], ...]:
    """The vectors as the request asked: the first ``dimensions`` components
    (Matryoshka-style shortening), normalised again when ``normalize``."""
    cut = [v[:dimensions] if dimensions else v for v in vectors]
    return tuple(l2_normalise(v) if normalize else tuple(v) for v in cut)
