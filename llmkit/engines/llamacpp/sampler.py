"""Build one llama.cpp sampler chain per sequence from a request's
``SamplingParams`` and its grammar (``grammar``: JSON output or tool calls).

Each sequence owns its chain, so temperature, seed, penalties and grammar never
leak between requests that share a batch. A grammar that holds only what follows
a reply's thinking is made with the chain (so a schema it cannot do is refused
before anything runs) and put in it when the thinking ends (``bind``).
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Callable, Sequence

import llama_cpp

from llmkit.core.types import GenerateRequest
from llmkit.engines.families import Family
from llmkit.engines.families.table import GENERIC
from llmkit.engines.llamacpp.grammar import Grammar, grammar_for
from llmkit.errors import InvalidRequestError


class Sampler:
    def __init__(
        self,
        req: GenerateRequest,
        vocab: llama_cpp.llama_vocab_p,
        n_vocab: int,
        hazards: Callable[[tuple[str, ...]], Sequence[int]] = lambda _: (),
        family: Family = GENERIC,
        after_thinking: bool = False,
    ):
        """``hazards``: the tokens a lazy grammar with these triggers must not sample
        (asked for only when there is one); ``family``: whose call syntax;
        ``after_thinking``: the grammar waits for ``bind`` (the thinking's end)."""
        params = req.sampling
        # may refuse the schema: do it before allocating
        grammar = grammar_for(req, family, after_thinking=after_thinking)
        self.chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        self._waiting: llama_cpp.llama_sampler_p | None = None  # the grammar, until bound
        self._grammar: llama_cpp.llama_sampler_p | None = None  # the grammar, once in the chain
        self._lazy = grammar is not None and grammar.lazy
        self._head = 0  # samplers before the grammar's place in the chain
        add = self._add
        biases = list(params.logit_bias)
        if grammar is not None and grammar.lazy:
            biases += [(t, float("-inf")) for t in hazards(grammar.triggers)]
        if biases:
            bias = (llama_cpp.llama_logit_bias * len(biases))()
            for i, (tok, b) in enumerate(biases):
                if not 0 <= tok < n_vocab:
                    self.close()
                    raise InvalidRequestError(
                        f"logit_bias names token {tok}, outside the vocabulary (0..{n_vocab - 1})",
                        param="logit_bias",
                    )
                bias[i].token, bias[i].bias = tok, b
            add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), bias))
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
            g = _grammar_sampler(vocab, grammar)
            if not g:
                self.close()
                param = "tools" if req.offers_tools else "response_format"
                raise InvalidRequestError(
                    "The JSON schema could not be turned into a grammar.", param=param
                )
            if after_thinking:
                self._waiting = g
                self._head = llama_cpp.llama_sampler_chain_n(self.chain)
            else:
                add(g)
                self._grammar = g
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

    def accept(self, token: int) -> None:
        """``token`` comes next without being sampled (the engine writes it): the
        penalties count it as they would a sampled one."""
        llama_cpp.llama_sampler_accept(self.chain, token)

    def bind(self, after_thinking: bool = True) -> None:
        """The reply's answer starts: the grammar holds what follows. Put in its
        place in the chain (after the biases and penalties, before the sampling),
        so the chain's other samplers keep their state (seed, penalties). An answer
        that starts without thinking (the model could have thought, and did not)
        binds only a lazy grammar: the text it has written already is no start of
        what a whole grammar holds, while a lazy one still waits for its trigger."""
        if self._waiting is None or not (after_thinking or self._lazy):
            return
        grammar, self._waiting = self._waiting, None
        n = llama_cpp.llama_sampler_chain_n(self.chain)
        tail = [
            llama_cpp.llama_sampler_chain_remove(self.chain, self._head)
            for _ in range(n - self._head)
        ]
        self._add(grammar)
        self._grammar = grammar
        for smpl in tail:
            self._add(smpl)

    def allows(self, tokens: list[int]) -> int:
        """How many of ``tokens`` (drafts, in order) the grammar lets through from
        where the reply stands: those past the first it refuses are not worth
        verifying. A copy of the grammar walks them; the chain's own is untouched."""
        if self._grammar is None:
            return len(tokens)
        g = llama_cpp.llama_sampler_clone(self._grammar)
        try:
            cell = llama_cpp.llama_token_data()
            cur = llama_cpp.llama_token_data_array(ctypes.pointer(cell), 1, -1, False)
            for i, t in enumerate(tokens):
                cell.id, cell.logit, cell.p = t, 0.0, 0.0
                cur.size, cur.selected = 1, -1
                llama_cpp.llama_sampler_apply(g, ctypes.byref(cur))
                if cell.logit == float("-inf"):
                    return i
                llama_cpp.llama_sampler_accept(g, t)
            return len(tokens)
        finally:
            llama_cpp.llama_sampler_free(g)

    def close(self) -> None:
        if self.chain:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None
            self._grammar = None  # the chain's
        if self._waiting is not None:
            llama_cpp.llama_sampler_free(self._waiting)
            self._waiting = None


def _grammar_sampler(vocab: llama_cpp.llama_vocab_p, grammar: Grammar) -> llama_cpp.llama_sampler_p:
    root = grammar.root.encode()
    if not grammar.lazy:
        return llama_cpp.llama_sampler_init_grammar(vocab, grammar.text.encode(), root)
    patterns = (ctypes.c_char_p * 1)(grammar.pattern.encode())
    return llama_cpp.llama_sampler_init_grammar_lazy_patterns(
        vocab, grammar.text.encode(), root, patterns, 1, None, 0
    )
