"""Pick the next token from a row of logits with ``SamplingParams``, in torch.

The same chain as the llama.cpp engine's, in the same order: logit bias,
penalties over the last ``repeat_last_n`` generated tokens, then greedy, or
top-k, top-p, min-p, temperature and a draw. Each sequence draws from its own
``torch.Generator``, so a seed repeats its answer whatever else is running.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import torch

from llmkit.core.types import GenerateRequest, SamplingParams
from llmkit.errors import InvalidRequestError


def check(req: GenerateRequest, n_vocab: int) -> None:
    """Refuse, before anything runs, what this engine cannot do: constrained
    output, which forced tool calls need too (auto calls are parsed as usual)."""
    params = req.sampling
    if req.offers_tools and req.tool_choice == "required":
        raise InvalidRequestError(
            "The transformers engine cannot force a tool call (tool_choice 'required' or a "
            "named function): it has no constrained decoding. Use tool_choice 'auto', or "
            "serve the model with --engine llamacpp (GGUF).",
            param="tool_choice",
        )
    if params.response_format == "json":
        raise InvalidRequestError(
            "JSON output (response_format / format) is not supported by the transformers "
            "engine; serve the model with --engine llamacpp (GGUF) or vllm for it.",
            param="response_format",
        )
    bad = [t for t, _ in params.logit_bias if not 0 <= t < n_vocab]
    if bad:
        raise InvalidRequestError(
            f"logit_bias names token {bad[0]}, outside the vocabulary (0..{n_vocab - 1})",
            param="logit_bias",
        )


def generator(params: SamplingParams, device: Any) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(params.seed if params.seed is not None else random.getrandbits(63))
    return g


def sample(
    logits: torch.Tensor,
    params: SamplingParams,
    generated: list[int],
    gen: torch.Generator,
) -> int:
    """``logits``: one float32 row over the vocabulary (it is changed in place)."""
    for token, bias in params.logit_bias:
        logits[token] += bias
    _penalize(logits, params, generated)
    if params.temperature <= 0.0:
        return int(torch.argmax(logits))
    if 0 < params.top_k < logits.numel():
        kth = torch.topk(logits, params.top_k).values[-1]
        logits[logits < kth] = float("-inf")
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= params.top_p  # keep the first past p
        logits[order[drop]] = float("-inf")
    if params.min_p > 0.0:
        probs = torch.softmax(logits, dim=-1)
        logits[probs < params.min_p * probs.max()] = float("-inf")
    probs = torch.softmax(logits / params.temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def _penalize(logits: torch.Tensor, params: SamplingParams, generated: list[int]) -> None:
    if (
        params.repeat_penalty == 1.0
        and params.frequency_penalty == 0.0
        and params.presence_penalty == 0.0
    ) or not generated:
        return
    window = generated[-params.repeat_last_n :] if params.repeat_last_n > 0 else generated
    counts = Counter(window)
    ids = torch.tensor(list(counts), device=logits.device)
    n = torch.tensor(list(counts.values()), device=logits.device, dtype=logits.dtype)
    picked = logits[ids]
    # llama.cpp's rule: shrink a positive logit, grow a negative one.
    picked = torch.where(picked > 0, picked / params.repeat_penalty, picked * params.repeat_penalty)
    logits[ids] = picked - n * params.frequency_penalty - params.presence_penalty
