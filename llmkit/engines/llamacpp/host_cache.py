"""The KV pool's second tier: sequences evicted from the pool, kept in host memory.

When the pool evicts a cached sequence for room, its cells are saved here (llama.cpp's
``llama_state_seq_get_data``: the K and V rows of every cell the sequence sees, with
their positions) instead of being lost. A later prompt that starts with more of a
saved sequence than the pool still holds gets those cells back with one copy
(``llama_state_seq_set_data``) rather than reading its history again, which is
what keeps long interleaved conversations cheap once they outgrow the pool.

Entries are whole sequences, kept least recently used first within a byte budget;
a sequence that extends a saved one replaces it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from llmkit.engines.llamacpp.token_prefix import common_prefix

#: Saving or restoring fewer tokens than this is not worth the copy.
MIN_TOKENS = 32


@dataclass(eq=False)
class Entry:
    tokens: list[int]
    blob: bytearray


class HostCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.bytes = 0
        self.tokens = 0
        self._entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: list[int], blob: bytearray) -> None:
        """Keep ``blob``, the saved cells of ``tokens``; drop what it supersedes, then
        the least recently used until the budget holds."""
        if not 0 < len(blob) <= self.budget:
            return
        for key, e in list(self._entries.items()):
            if common_prefix(e.tokens, tokens) == len(e.tokens):
                self._drop(key)
        entry = Entry(list(tokens), blob)
        self._entries[id(entry)] = entry
        self.bytes += len(blob)
        self.tokens += len(tokens)
        while self.bytes > self.budget:
            self._drop(next(iter(self._entries)))

    def find(self, tokens: list[int], better_than: int) -> tuple[Entry, int] | None:
        """The entry sharing the longest start with ``tokens``, if that is at least
        ``MIN_TOKENS`` more than ``better_than`` tokens: (entry, how many)."""
        best, best_n = None, better_than + MIN_TOKENS - 1
        for e in self._entries.values():
            n = common_prefix(e.tokens, tokens)
            if n > best_n:
                best, best_n = e, n
        if best is None:
            return None
        self._entries.move_to_end(id(best))
        return best, best_n

    def take(self, entry: Entry) -> None:
        """``entry`` is back in the pool whole: it is saved again when evicted again."""
        self._drop(id(entry))

    def _drop(self, key: int) -> None:
        e = self._entries.pop(key)
        self.bytes -= len(e.blob)
        self.tokens -= len(e.tokens)
