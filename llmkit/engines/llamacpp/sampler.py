"""Build one llama.cpp sampler chain per sequence from ``SamplingParams``.

Each sequence owns its chain, so temperature, seed, penalties and grammar never
leak between requests that share a batch.
"""

from __future__ import annotations

import random

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from llmkit.core.types import SamplingParams
from llmkit.errors import InvalidRequestError


class Sampler:
    def __init__(self, params: SamplingParams, vocab: llama_cpp.llama_vocab_p, n_vocab: int):
        grammar = _grammar(params)  # may refuse the schema: do it before allocating
        self.chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        add = self._add
        if params.logit_bias:
            bias = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
            for i, (tok, b) in enumerate(params.logit_bias):
                if not 0 <= tok < n_vocab:
                    self.close()
                    raise InvalidRequestError(
                        f"logit_bias names token {tok}, outside the vocabulary (0..{n_vocab - 1})",
                        param="logit_bias",
                    )
                bias[i].token, bias[i].bias = tok, b
            add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(params.logit_bias), bias))
        if (
            params.repeat_penalty != 1.0
            or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0
        ):
            add(
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    params.repeat_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            )
        if grammar is not None:
            g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not g:
                self.close()
                raise InvalidRequestError(
                    "The JSON schema could not be turned into a grammar.", param="response_format"
                )
            add(g)
        if params.temperature <= 0.0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            if params.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(params.top_k))
            if params.top_p < 1.0:
                add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0.0:
                add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(params.temperature))
            seed = params.seed if params.seed is not None else random.getrandbits(32)
            add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def _add(self, smpl: llama_cpp.llama_sampler_p) -> None:
        llama_cpp.llama_sampler_chain_add(self.chain, smpl)

    def sample(self, ctx: llama_cpp.llama_context_p, batch_index: int) -> int:
        """Pick the next token from the logits at ``batch_index`` (and accept it)."""
        return llama_cpp.llama_sampler_sample(self.chain, ctx, batch_index)

    def close(self) -> None:
        if self.chain:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None


def _grammar(params: SamplingParams) -> str | None:
    """The GBNF grammar that constrains the output, if any."""
    if params.response_format != "json":
        return None
    if params.json_schema is None:
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(params.json_schema)
    except Exception as e:  # the converter raises bare exceptions on schemas it can't do
        raise InvalidRequestError(
            f"The JSON schema is not supported: {e}", param="response_format"
        ) from e
