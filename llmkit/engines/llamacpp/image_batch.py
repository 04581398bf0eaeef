"""The image half of a llama.cpp decode step (``step``): runs of image
placeholders (``engines.media``), each one image tile's or a part of one, decoded
from the tile's embeddings (``vision.Projector``) in a llama_batch of
embeddings, beside the step's batch of tokens.

A tile read with full attention among its embeddings (Gemma 3's) is decoded
whole, alone, with causal attention switched off for that decode, as llama.cpp's
own helpers do; the others, of any sequences, go in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import llama_cpp
import numpy as np

from llmkit.engines.llamacpp.model import N_BATCH, LoadedModel
from llmkit.engines.llamacpp.vision import Projector
from llmkit.engines.media import split_placeholder

if TYPE_CHECKING:
    from llmkit.engines.llamacpp.step import Seq


class ImageBatch:
    """The step's image embeddings: runs of placeholders, each one image's (or a
    part of one), decoded from the images' embeddings in a batch of their own."""

    def __init__(self, lm: LoadedModel, projector: Projector) -> None:
        self.lm = lm
        self.projector = projector
        self.n_embd = projector.n_embd
        self.batch = llama_cpp.llama_batch_init(N_BATCH, self.n_embd, 1)
        self.rows = np.ctypeslib.as_array(self.batch.embd, shape=(N_BATCH, self.n_embd))
        self.runs: list[tuple[Seq, int, int]] = []  # (sequence, first position, count)

    def clear(self) -> None:
        self.runs = []

    def take(self, seq: Seq, room: int) -> int:
        """Put up to ``room`` of ``seq``'s next placeholders (one image's) in the
        batch: how many. An image that must be read whole (full attention among
        its embeddings) waits for a step with room for all of it."""
        st = seq.state
        key, offset = split_placeholder(st.feed[st.n_done])
        image = st.images[key]
        left = image.n_tokens - offset
        if left > room and self.projector.non_causal(image):
            return 0
        take = min(left, room)
        self.runs.append((seq, st.n_done, take))
        return take

    def decode(self, sample: Callable[[Seq, int], int]) -> list[tuple[Seq, int | Exception]]:
        """Decode the runs: those read with full attention one by one, the rest
        together; the token ``sample`` gives each that reached its prompt's end."""
        full = [r for r in self.runs if self._non_causal(r)]
        plain = [r for r in self.runs if not self._non_causal(r)]
        outputs: list[tuple[Seq, int | Exception]] = []
        for group, causal in [(plain, True)] + [([r], False) for r in full]:
            if not group:
                continue
            n = 0
            outs = []
            for seq, start, count in group:
                st = seq.state
                key, offset = split_placeholder(st.feed[start])
                embd = self.projector.embeddings(st.images[key])
                self.rows[n : n + count] = embd[offset : offset + count]
                b = self.batch
                for i in range(count):  # as ``batch_put``, with no token: the row is its input
                    last = start + i == len(st.feed) - 1
                    b.pos[n + i], b.n_seq_id[n + i], b.seq_id[n + i][0] = start + i, 1, st.lane
                    b.logits[n + i] = last
                    if last:
                        outs.append((seq, n + i))
                n += count
            self.batch.n_tokens = n
            if not causal:
                llama_cpp.llama_set_causal_attn(self.lm.ctx, False)
            try:
                rc = llama_cpp.llama_decode(self.lm.ctx, self.batch)
            finally:
                if not causal:
                    llama_cpp.llama_set_causal_attn(self.lm.ctx, True)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} on image embeddings")
            outputs += [(seq, sample(seq, row)) for seq, row in outs]
        return outputs

    def _non_causal(self, run: tuple[Seq, int, int]) -> bool:
        seq, start, _ = run
        key, _ = split_placeholder(seq.state.feed[start])
        return self.projector.non_causal(seq.state.images[key])

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)


class NoImages:
    """Where the model has no projector: a placeholder is a request that slipped
    past the engine's check, and fails its sequence rather than the step."""

    def clear(self) -> None:
        pass

    def take(self, seq: Seq, room: int) -> int:
        raise RuntimeError("this model has no projector for images")


NO_IMAGES = NoImages()
