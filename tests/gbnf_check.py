"""Whether llama.cpp's grammar sampler takes a text: the grammar parsed by
llama.cpp itself (``llama_sampler_init_grammar``), the text tokenized with the
bundled model's vocabulary and each token offered to the sampler, which leaves
a token it refuses at -inf. The text is taken when every token is allowed and
the grammar may end after the last (end of generation allowed)."""

from __future__ import annotations

import ctypes
import math

import llama_cpp


class GrammarCheck:
    def __init__(self, model_path: str) -> None:
        self._llama = llama_cpp.Llama(model_path, vocab_only=True, verbose=False)
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self._eos = llama_cpp.llama_vocab_eos(self._vocab)

    def parses(self, grammar: str) -> bool:
        smpl = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if smpl:
            llama_cpp.llama_sampler_free(smpl)
        return bool(smpl)

    def accepts(self, grammar: str, text: str) -> bool:
        smpl = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        assert smpl, "llama.cpp does not parse the grammar"
        try:
            for token in self._llama.tokenize(text.encode(), add_bos=False, special=False):
                if not self._allowed(smpl, token):
                    return False
                llama_cpp.llama_sampler_accept(smpl, token)
            return self._allowed(smpl, self._eos)
        finally:
            llama_cpp.llama_sampler_free(smpl)

    @staticmethod
    def _allowed(smpl: object, token: int) -> bool:
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        arr = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
        return not math.isinf(data[0].logit)
