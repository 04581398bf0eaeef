"""Turn a stream of token byte pieces into clean text deltas.

Two hazards sit between a tokenizer and a client: a token may end halfway through
a multi-byte UTF-8 character (common with Chinese text and emoji), and a stop
string may straddle two tokens. ``TextStream`` holds back exactly the bytes and
characters that could still turn out to be either, so a delta is never garbled
and never leaks the start of a stop string.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._held = ""  # decoded text that may be the start of a stop string
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended it (Anthropic names it)
        self.sent = 0  # bytes of the text handed out so far (which tokens it covers)

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to emit.

        After a stop string is found, ``stopped`` is set and everything from the
        stop string on is dropped.
        """
        return self._count(self._push(piece))

    def _push(self, piece: bytes) -> str:
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(piece)
        if not self._stop:
            self._held = ""
            return text
        found = [(i, s) for s in self._stop if (i := text.find(s)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda f: f[0])
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._partial_stop_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The generation ended without a stop string: release what was held.

        Bytes of a character the generation never finished (it ran out of tokens
        mid-character) are dropped rather than shown as U+FFFD.
        """
        if self.stopped:
            return ""
        text, self._held = self._held, ""
        self._decoder.reset()
        return self._count(text)

    def _count(self, text: str) -> str:
        self.sent += len(text.encode("utf-8"))
        return text

    def _partial_stop_suffix(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins some stop string."""
        best = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
