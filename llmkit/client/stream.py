"""Reading a streamed reply, line by line, into core ``Chunk``s: OpenAI's
server-sent events (``data: {...}`` then ``data: [DONE]``), Ollama's NDJSON
(one object a line, the last with ``"done": true``), or Anthropic's events
(``message_start``, content blocks and their deltas, ``message_delta``,
``message_stop``).

Text comes out as it arrives, and a reasoning model's thinking apart from it
(``Chunk.reasoning``): OpenAI-style servers send it as ``reasoning_content``
(DeepSeek's and vLLM's name; ``reasoning`` in some), Ollama as ``thinking``,
Anthropic as ``thinking`` blocks (``thinking_delta``).
The reply's end comes out as one last chunk that
carries both ``finish_reason`` and ``usage``, although OpenAI sends them in two
events. An error line (a server whose headers had gone out when it failed)
raises the llmkit exception it describes. No I/O here: ``client.http`` feeds it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from llmkit.client.protocol import Dialect, error_from
from llmkit.core.types import Chunk, Logprob, ToolCallDelta, Usage
from llmkit.errors import UpstreamError


class ReplyReader:
    def __init__(self, dialect: Dialect, server: str = "the server") -> None:
        self.dialect = dialect
        self.server = server  # how errors name it: "http://h:8000", "The upstream server ..."
        self.done = False  # the last chunk has been given out
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._pieces = 0
        self._calls = 0  # tool calls seen: a reply with calls ends as "tool_calls"
        self._blocks: dict[int, int] = {}  # Anthropic: tool_use block -> call index
        self._argued: set[int] = set()  # Anthropic: calls whose arguments came
        self._prompt = 0  # Anthropic: input tokens, said at the start

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
        if self.dialect == "anthropic":
            return self._anthropic(self._json(data))
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
            details = u.get("completion_tokens_details") or {}
            self._usage = Usage(
                u.get("prompt_tokens", 0),
                u.get("completion_tokens", 0),
                reasoning_tokens=details.get("reasoning_tokens") or 0,
            )
        choices = obj.get("choices") or []
        if not choices:
            return []
        c = choices[0]
        self._finish = c.get("finish_reason") or self._finish
        # chat chunks carry a delta (a server that answered whole: a message);
        # completion chunks (/v1/completions) a text
        delta = c.get("delta") or c.get("message") or {}
        thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
        text = delta.get("content") or c.get("text") or ""
        out = self._text(text, _openai_logprobs(c), thought if isinstance(thought, str) else "")
        calls = tuple(
            ToolCallDelta(
                index=int(t.get("index", 0)),
                id=t.get("id"),
                name=(t.get("function") or {}).get("name"),
                arguments=(t.get("function") or {}).get("arguments") or "",
            )
            for t in delta.get("tool_calls") or []
        )
        if calls:
            self._calls += 1
            out.append(Chunk(tool_calls=calls))
        return out

    def _ollama(self, obj: dict[str, Any]) -> list[Chunk]:
        message = obj.get("message") or {}
        scored = tuple(_entry(e) for e in obj.get("logprobs") or ())
        text = message.get("content") or obj.get("response") or ""
        # /api/chat thinks in the message, /api/generate beside the response
        out = self._text(text, scored, message.get("thinking") or obj.get("thinking") or "")
        calls = []
        for t in message.get("tool_calls") or []:  # whole calls, arguments as objects
            fn = t.get("function") or {}
            calls.append(
                ToolCallDelta(
                    index=self._calls,
                    id=t.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                    name=fn.get("name"),
                    arguments=json.dumps(fn.get("arguments") or {}, ensure_ascii=False),
                )
            )
            self._calls += 1
        if calls:
            out.append(Chunk(tool_calls=tuple(calls)))
        if obj.get("done"):
            self._finish = obj.get("done_reason") or "stop"
            self._usage = Usage(obj.get("prompt_eval_count", 0), obj.get("eval_count", 0))
            out.append(self._last())
        return out

    def _anthropic(self, obj: dict[str, Any]) -> list[Chunk]:
        kind, at = obj.get("type"), obj.get("index", 0)
        if kind == "message_start":
            self._prompt = ((obj.get("message") or {}).get("usage") or {}).get("input_tokens", 0)
        elif kind == "content_block_start":
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._blocks[at] = self._calls
                self._calls += 1
                call = ToolCallDelta(self._blocks[at], id=block.get("id"), name=block.get("name"))
                return [Chunk(tool_calls=(call,))]
            return self._text(block.get("text") or "", (), block.get("thinking") or "")
        elif kind == "content_block_delta":
            d = obj.get("delta") or {}
            if d.get("type") == "input_json_delta" and at in self._blocks:
                self._argued.add(at)
                call = ToolCallDelta(self._blocks[at], arguments=d.get("partial_json") or "")
                return [Chunk(tool_calls=(call,))]
            return self._text(d.get("text") or "", (), d.get("thinking") or "")
        elif kind == "content_block_stop" and at in self._blocks and at not in self._argued:
            # a call with no arguments sends no delta: its arguments are an empty object
            return [Chunk(tool_calls=(ToolCallDelta(self._blocks[at], arguments="{}"),))]
        elif kind == "message_delta":
            stop = (obj.get("delta") or {}).get("stop_reason")
            self._finish = {"max_tokens": "length", "tool_use": "tool_calls"}.get(stop, "stop")
            out_tokens = (obj.get("usage") or {}).get("output_tokens", 0)
            self._usage = Usage(self._prompt, out_tokens)
        elif kind == "message_stop":
            return [self._last()]
        return []

    def _text(self, text: str, scored: tuple[Logprob, ...] = (), thought: str = "") -> list[Chunk]:
        if not text and not scored and not thought:
            return []
        self._pieces += bool(text) + bool(thought)
        return [Chunk(text=text, reasoning=thought, logprobs=scored)]

    def _last(self) -> Chunk:
        self.done = True
        finish = "length" if self._finish == "length" else "stop"
        if self._calls and self._finish != "length":
            finish = "tool_calls"  # Ollama says "stop" after calls; OpenAI "tool_calls"
        return Chunk(
            finish_reason=finish,  # type: ignore[arg-type]
            # a server that counts nothing: about a token a piece
            usage=self._usage or Usage(prompt_tokens=0, completion_tokens=self._pieces),
        )


# -- log-probabilities: the server's token ids are not on the wire (-1) ------------


def _entry(e: dict[str, Any]) -> Logprob:
    """One entry as OpenAI's chat and Ollama write it: token, logprob, bytes, top_logprobs."""
    raw = e.get("bytes")
    piece = bytes(raw) if raw else str(e.get("token") or "").encode("utf-8")
    top = tuple(_entry(t) for t in e.get("top_logprobs") or ())
    return Logprob(-1, piece, float(e.get("logprob") or 0.0), top)


def _openai_logprobs(choice: dict[str, Any]) -> tuple[Logprob, ...]:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return ()
    if "content" in lp:  # chat
        return tuple(_entry(e) for e in lp.get("content") or ())
    # completions: parallel lists, alternatives as {token: logprob}
    tops = lp.get("top_logprobs") or []
    return tuple(
        Logprob(
            -1,
            token.encode("utf-8"),
            float(value if value is not None else 0.0),
            tuple(
                Logprob(-1, t.encode("utf-8"), float(v))
                for t, v in (tops[i] if i < len(tops) and tops[i] else {}).items()
            ),
        )
        for i, (token, value) in enumerate(
            zip(lp.get("tokens") or [], lp.get("token_logprobs") or [], strict=False)
        )
    )
