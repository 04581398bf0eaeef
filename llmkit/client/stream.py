"""Reading a streamed reply, line by line, into core ``Chunk``s: OpenAI's
server-sent events (``data: {...}`` then ``data: [DONE]``) or Ollama's NDJSON
(one object a line, the last with ``"done": true``).

Text comes out as it arrives; the reply's end comes out as one last chunk that
carries both ``finish_reason`` and ``usage``, although OpenAI sends them in two
events. An error line (a server whose headers had gone out when it failed)
raises the llmkit exception it describes. No I/O here: ``client.http`` feeds it.
"""

from __future__ import annotations

import json
from typing import Any

from llmkit.client.protocol import Dialect, error_from
from llmkit.core.types import Chunk, Usage
from llmkit.errors import UpstreamError


class ReplyReader:
    def __init__(self, dialect: Dialect, server: str = "the server") -> None:
        self.dialect = dialect
        self.server = server  # how errors name it: "http://h:8000", "The upstream server ..."
        self.done = False  # the last chunk has been given out
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._pieces = 0

    def feed(self, line: str) -> list[Chunk]:
        """The chunks one line carries: none, a piece of text, and/or the last one."""
        line = line.strip()
        if not line or self.done:
            return []
        if self.dialect == "ollama":
            return self._ollama(self._json(line))
        if not line.startswith("data:"):
            return []  # SSE comments, event names
        data = line[5:].strip()
        if data == "[DONE]":
            return [self._last()]
        return self._openai(self._json(data))

    def end(self) -> list[Chunk]:
        """The stream has run out: the last chunk if the reply had finished."""
        if self.done:
            return []
        if self._finish is None:
            raise UpstreamError(f"{self.server} ended the reply before its end.")
        return [self._last()]

    def _json(self, data: str) -> dict[str, Any]:
        obj = json.loads(data)
        if isinstance(obj, dict) and "error" in obj:
            raise error_from(obj, 500, self.server)  # no status mid-stream: it was a 200
        return obj

    def _openai(self, obj: dict[str, Any]) -> list[Chunk]:
        if obj.get("usage"):
            u = obj["usage"]
            self._usage = Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
        choices = obj.get("choices") or []
        if not choices:
            return []
        c = choices[0]
        self._finish = c.get("finish_reason") or self._finish
        # chat chunks carry a delta; completion chunks (/v1/completions) a text
        return self._text((c.get("delta") or {}).get("content") or c.get("text") or "")

    def _ollama(self, obj: dict[str, Any]) -> list[Chunk]:
        out = self._text((obj.get("message") or {}).get("content") or obj.get("response") or "")
        if obj.get("done"):
            self._finish = obj.get("done_reason") or "stop"
            self._usage = Usage(obj.get("prompt_eval_count", 0), obj.get("eval_count", 0))
            out.append(self._last())
        return out

    def _text(self, text: str) -> list[Chunk]:
        if not text:
            return []
        self._pieces += 1
        return [Chunk(text=text)]

    def _last(self) -> Chunk:
        self.done = True
        return Chunk(
            finish_reason="length" if self._finish == "length" else "stop",
            # a server that counts nothing: about a token a piece
            usage=self._usage or Usage(prompt_tokens=0, completion_tokens=self._pieces),
        )
