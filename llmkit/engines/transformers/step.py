"""One decode step of the transformers engine, for the shared ``DecodeLoop``:
the active sequences take turns on the model, one forward pass each.

Each turn feeds one sequence a chunk of its prompt, or its last token, with that
sequence's own KV cache, then samples. Streams therefore advance together and a
long reply never holds up a new request; what this does not do is run several
sequences in one matmul: batching sequences of different lengths needs a padded
or paged KV cache, which is transformers' continuous batching API (still
changing from release to release) or vLLM's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmkit.core.types import SamplingParams
from llmkit.engines.decode_loop import Backend, Sequence
from llmkit.engines.logprobs import score
from llmkit.engines.transformers import sampler
from llmkit.engines.transformers.model import LoadedHF

PREFILL_CHUNK = 256  # prompt tokens per turn: a long prompt does not stall the others


@dataclass(eq=False)
class SeqState:
    sampling: SamplingParams
    gen: Any  # the sequence's own torch.Generator: a seed repeats whatever else runs
    window: list[int]  # tokens the text deltas are decoded from
    offsets: list[int]  # [prefix, read] into ``window`` (``LoadedHF.delta``)
    cache: Any = None
    fed: int = 0  # prompt tokens in the cache
    generated: list[int] = field(default_factory=list)  # for the penalties
    # A prompt's images, as the processor gave them (pixel values...): the prompt
    # is then read in one pass, where the model puts the images in their places.
    image_inputs: dict[str, Any] | None = None


Seq = Sequence[SeqState]


def new_state(lm: LoadedHF, sampling: SamplingParams, prompt: list[int]) -> SeqState:
    # The prompt's last tokens decode along with the reply (word-initial spaces).
    window = list(prompt[-4:])
    return SeqState(sampling, sampler.generator(sampling, lm.device), window, [0, len(window)])


class TurnStep(Backend[SeqState]):
    def __init__(self, lm: LoadedHF, *, parallel: int) -> None:
        self.lm = lm
        self.parallel = parallel

    def admit(self, seq: Seq) -> None:
        pass  # each sequence brings its own cache: nothing to share or reserve

    def step(self, active: list[Seq]) -> list[tuple[Seq, int | Exception]]:
        out: list[tuple[Seq, int | Exception]] = []
        with self.lm.torch.inference_mode():
            for seq in active:
                try:
                    token = self._turn(seq)
                except Exception as e:  # a failure of one sequence ends only that one
                    out.append((seq, e))
                else:
                    if token is not None:
                        out.append((seq, token))
        return out

    def _turn(self, seq: Seq) -> int | None:
        st = seq.state
        extra: dict[str, Any] = {}
        if st.fed < len(seq.prompt):
            feed = seq.prompt[st.fed : st.fed + PREFILL_CHUNK]
            if st.image_inputs is not None:
                feed, extra, st.image_inputs = list(seq.prompt), st.image_inputs, None
        else:
            assert seq.pending is not None
            feed = [seq.pending]
        ids = self.lm.torch.tensor([feed], device=self.lm.device)
        out = self.lm.model(input_ids=ids, use_cache=True, **{self.lm.cache_kw: st.cache}, **extra)
        st.cache = out.get("cache") if "cache" in out else out.past_key_values
        st.fed = min(st.fed + len(feed), len(seq.prompt))
        if seq.pending is None and st.fed < len(seq.prompt):
            return None  # more prompt to read first
        logits = out.logits[0, -1].float()
        # The raw row, before the sampler changes it in place (``logprobs``: why raw).
        raw = None if seq.logprobs is None else logits.cpu().numpy().copy()
        token = seq.next_forced  # written by the engine: nothing is sampled
        if token is None:
            token = sampler.sample(logits, st.sampling, st.generated, st.gen)
        st.generated.append(token)
        if raw is not None:
            context = st.window[-4:]
            seq.scored = score(raw, token, seq.logprobs, lambda t: self.lm.piece_after(context, t))
        return token

    def piece(self, seq: Seq, token: int) -> bytes:
        st = seq.state
        if seq.special and token in self.lm.eos_ids:
            return b""  # an end-of-generation token (where the request ignores them) is no marker
        st.window.append(token)
        return self.lm.delta(st.window, st.offsets, special=seq.special).encode("utf-8")

    def is_eog(self, token: int) -> bool:
        return token in self.lm.eos_ids

    def release(self, seq: Seq) -> None:
        seq.state.cache = None  # the KV cache goes now, not when the request object does
