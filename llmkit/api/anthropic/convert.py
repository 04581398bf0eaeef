"""Pure translations between Anthropic's Messages API and llmkit's core types.

``from_*`` read a request into a ``GenerateRequest``; ``to_message`` builds a
reply and ``to_events`` a stream's events from core ``Chunk``s. No HTTP, no
registry: the route hands in the id and the model name (``Head``).

Anthropic's turns hold blocks where core messages hold fields: a user turn's
``tool_result`` blocks become ``tool`` messages (in their order among its
text), an assistant turn's ``tool_use`` blocks become its ``tool_calls`` and
its ``thinking`` blocks its ``reasoning``. The
tools go through the same checks and the same engines' calls as the other
dialects' (``api.tools``); ``any`` is core's ``required``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from llmkit.api.anthropic import schemas as s
from llmkit.api.anthropic import thinking as th
from llmkit.api.images import Images
from llmkit.api.tools import check_choice, tool_from_dict
from llmkit.core.images import FORMATS
from llmkit.core.tools import join_calls
from llmkit.core.types import (
    DEFAULT_SAMPLING,
    Chunk,
    GenerateRequest,
    Image,
    Message,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from llmkit.errors import InvalidRequestError

log = logging.getLogger("llmkit.api.anthropic")
# Anthropic's documented default, for what neither a request nor its model sets.
DEFAULT_TEMPERATURE = 1.0
DEFAULTS = replace(DEFAULT_SAMPLING, temperature=DEFAULT_TEMPERATURE)
# Anthropic's ids say what they name; the engines' calls are "call_...".
_CALL_PREFIX, _TOOLU_PREFIX = "call_", "toolu_"
_CHOICES: dict[str, ToolChoice] = {
    "auto": "auto",
    "any": "required",
    "tool": "required",
    "none": "none",
}


def _text(blocks: str | list[s.Block] | None, where: str) -> str:
    """Text blocks joined (a plain string as it is); any other block is a 400."""
    if blocks is None:
        return ""
    if isinstance(blocks, str):
        return blocks
    parts = []
    for j, b in enumerate(blocks):
        if b.type != "text" or b.text is None:
            raise _unsupported(b, f"{where}.{j}")
        parts.append(b.text)
    return "".join(parts)


def _unsupported(b: s.Block, where: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{where}: content blocks of type '{b.type}' are not supported here; send text, "
        "image (user), tool_use (assistant) and tool_result (user) blocks.",
        param=where,
    )


def _image(b: s.Block, where: str, images: Images) -> Image:
    """An ``image`` block's image: its source is base64 data of a declared
    supported type, or a URL (fetched only where the server allows it)."""
    ref = s.image_ref(b, where)
    if ref is None:
        raise InvalidRequestError(
            f"{where}.source must be {{'type': 'base64', 'media_type', 'data'}} or "
            "{'type': 'url', 'url'}.",
            param=f"{where}.source",
        )
    declared = (b.source or {}).get("media_type")
    if ref.kind == "base64" and declared not in FORMATS.values():
        raise InvalidRequestError(
            f"{where}.source.media_type must be one of {', '.join(FORMATS.values())}; "
            f"got {declared!r}.",
            param=f"{where}.source.media_type",
        )
    return images.get(ref)


def _user_turn(blocks: list[s.Block], i: int, images: Images) -> list[Message]:
    """A user turn's blocks in order: runs of text and images as user messages,
    each ``tool_result`` as a tool message answering its call."""
    out: list[Message] = []
    texts: list[str] = []
    seen: list[Image] = []

    def flush() -> None:
        if texts or seen:
            out.append(Message("user", "".join(texts), images=tuple(seen)))
            texts.clear()
            seen.clear()

    for j, b in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        if b.type == "text" and b.text is not None:
            texts.append(b.text)
        elif b.type == "image":
            seen.append(_image(b, where, images))
        elif b.type == "tool_result":
            if not b.tool_use_id:
                raise InvalidRequestError(
                    f"{where}.tool_use_id is required.", param=f"{where}.tool_use_id"
                )
            flush()
            result = _text(b.content, f"{where}.content")
            if b.is_error:  # core messages have no flag: the model reads it in the text
                result = f"Error: {result}"
            out.append(Message("tool", result, tool_call_id=b.tool_use_id))
        else:
            raise _unsupported(b, where)
    flush()
    return out


def _assistant_turn(blocks: list[s.Block], i: int) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    thoughts: list[str] = []
    for j, b in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        if b.type == "text" and b.text is not None:
            texts.append(b.text)
        elif b.type == "thinking":
            thoughts.append(b.thinking or "")  # the template decides if the model sees it
        elif b.type == "tool_use":
            if not b.id or not b.name or not isinstance(b.input, dict):
                raise InvalidRequestError(
                    f"{where}: a tool_use block needs an id, a name and an input object.",
                    param=where,
                )
            calls.append(ToolCall(b.id, b.name, json.dumps(b.input)))
        elif b.type == "redacted_thinking":
            continue  # Anthropic's encrypted thinking: nothing a local model can read
        else:
            raise _unsupported(b, where)
    return Message("assistant", "".join(texts), tuple(calls), reasoning="".join(thoughts))


def from_messages(req: s.PromptFields, images: Images | None = None) -> tuple[Message, ...]:
    """``system`` first, then each turn (a user turn may become several messages);
    ``images``: the request's images as ``api.images`` read them."""
    images = images if images is not None else Images()
    out: list[Message] = []
    system = _text(req.system, "system")
    if system:
        out.append(Message("system", system))
    for i, m in enumerate(req.messages):
        if not m.content and not isinstance(m.content, str):
            raise InvalidRequestError(
                f"messages.{i}.content is an empty list of blocks.", param=f"messages.{i}.content"
            )
        if isinstance(m.content, str):
            out.append(Message(m.role, m.content))
        elif m.role == "user":
            out.extend(_user_turn(m.content, i, images))
        else:
            out.append(_assistant_turn(m.content, i))
    return tuple(out)


@dataclass(frozen=True)
class ToolsAsked:
    tools: tuple[Tool, ...] = ()
    choice: ToolChoice = "auto"
    name: str | None = None
    parallel: bool = True


def _tool(t: s.ToolDefinition, i: int) -> Tool:
    where = f"tools.{i}"
    if t.type not in (None, "custom"):
        raise InvalidRequestError(
            f"{where}: server tools (type '{t.type}') are not supported; define a client "
            "tool with a name, a description and an input_schema.",
            param=f"{where}.type",
        )
    if t.input_schema is None:
        raise InvalidRequestError(
            f"{where}.input_schema is required.", param=f"{where}.input_schema"
        )
    fn = {"name": t.name, "description": t.description, "parameters": t.input_schema}
    try:
        return tool_from_dict(fn, where)
    except InvalidRequestError as e:  # the shared checks say "parameters": ours is input_schema
        param = (e.param or where).replace(f"{where}.parameters", f"{where}.input_schema")
        message = e.message.replace(f"{where}.parameters", f"{where}.input_schema")
        raise InvalidRequestError(message, param=param) from None


def from_tools(req: s.PromptFields) -> ToolsAsked:
    """``tools`` and ``tool_choice``, checked: ``any`` must call some tool,
    ``tool`` that one, ``none`` hides them; ``disable_parallel_tool_use``
    allows one call at most."""
    tools = tuple(_tool(t, i) for i, t in enumerate(req.tools or ()))
    tc = req.tool_choice
    if tc is None:
        return ToolsAsked(tools)
    choice = _CHOICES[tc.type]
    if tc.type == "tool" and not tc.name:
        raise InvalidRequestError(
            "tool_choice of type 'tool' needs the name of a tool.", param="tool_choice.name"
        )
    name = tc.name if tc.type == "tool" else None
    check_choice(tools, choice, name, "tool_choice")
    return ToolsAsked(tools, choice, name, parallel=not tc.disable_parallel_tool_use)


def _request(
    req: s.PromptFields, images: Images | None, max_tokens: int | None = None, **kw: Any
) -> GenerateRequest:
    asked = from_tools(req)
    think, budget, effort = th.read_thinking(req, max_tokens)
    return GenerateRequest(
        messages=from_messages(req, images),
        tools=asked.tools,
        tool_choice=asked.choice,
        tool_name=asked.name,
        parallel_tool_calls=asked.parallel,
        max_tokens=max_tokens,
        think=think,
        reasoning_budget=budget,
        effort=effort,
        **kw,
    )


def from_messages_request(req: s.MessagesRequest, images: Images | None = None) -> GenerateRequest:
    # Unset fields are the model's (its Modelfile), then ``DEFAULTS``.
    sampling = SamplingParams(temperature=req.temperature, top_p=req.top_p, top_k=req.top_k)
    stops = tuple(req.stop_sequences or ())
    if any(not x for x in stops):
        raise InvalidRequestError(
            "stop_sequences may not hold empty strings.", param="stop_sequences"
        )
    return _request(
        req, images, sampling=sampling, defaults=DEFAULTS, max_tokens=req.max_tokens, stop=stops
    )


def from_count_request(req: s.CountTokensRequest, images: Images | None = None) -> GenerateRequest:
    """The prompt a message with the same fields would be generated from."""
    return _request(req, images)


# -- responses ------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """What the message of one answer carries, in a reply and in every stream."""

    id: str
    model: str


def tool_use_id(call_id: str) -> str:
    """Anthropic's id for an engine's call: ``call_x`` is ``toolu_x``; an id of
    another form (Mistral's nine letters and digits, which its templates insist
    on when the call comes back) is kept as it is."""
    if not call_id.startswith(_CALL_PREFIX):
        return call_id
    return _TOOLU_PREFIX + call_id.removeprefix(_CALL_PREFIX)


def _input(c: ToolCall) -> dict[str, Any]:
    try:
        args = json.loads(c.arguments_json)
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):  # forced and auto calls are grammar-held: not expected
        log.warning("call of %s has arguments that are not a JSON object: %r", c.name, args)
        return {}
    return args


def stop_reason(last: Chunk) -> s.StopReason:
    if last.finish_reason == "tool_calls":
        return "tool_use"
    if last.finish_reason == "length":
        return "max_tokens"
    return "stop_sequence" if last.stop_sequence is not None else "end_turn"


def to_usage(usage: Usage | None) -> s.Usage:
    if usage is None:
        return s.Usage(input_tokens=0, output_tokens=0)
    thought = usage.reasoning_tokens
    details = s.OutputTokensDetails(thinking_tokens=thought) if thought else None
    return s.Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        output_tokens_details=details,
    )


def to_message(
    head: Head, text: str, last: Chunk, *, shown: bool = True, blocks: bool = True
) -> s.Message:
    """``last``: the final chunk, holding every call delta and the whole thinking
    (as ``collect`` gives); ``shown``: the thinking's text is sent (``thinking.
    shows_thinking``); ``blocks``: thinking blocks are sent at all (``thinking.
    gives_blocks``; the usage counts the thinking either way)."""
    calls = join_calls(last.tool_calls)
    content: list[s.ThinkingBlock | s.TextBlock | s.ToolUseBlock] = []
    reasoning = last.reasoning if blocks else ""
    if reasoning:
        content.append(th.block(reasoning, shown))
    if text or not (calls or reasoning):
        content.append(s.TextBlock(text=text))
    content += [s.ToolUseBlock(id=tool_use_id(c.id), name=c.name, input=_input(c)) for c in calls]
    reason = stop_reason(last)
    return s.Message(
        id=head.id,
        model=head.model,
        content=content,
        stop_reason=reason,
        stop_sequence=last.stop_sequence if reason == "stop_sequence" else None,
        usage=to_usage(last.usage),
    )


Event = dict[str, Any]


async def to_events(
    head: Head,
    stream: AsyncIterable[tuple[int, Chunk]],
    *,
    input_tokens: int,
    shown: bool = True,
    blocks: bool = True,
) -> AsyncIterator[Event]:
    """A stream's events in Anthropic's order: ``message_start``, a ``ping``, then
    per block a start, its deltas (``thinking_delta`` then a ``signature_delta``;
    ``text_delta``; a call's ``input_json_delta``) and a stop, then
    ``message_delta`` (stop reason, usage) and ``message_stop``.
    ``input_tokens``: the prompt's count as far as known before the end (the
    final figure comes again in ``message_delta``); ``shown``, ``blocks``: as
    ``to_message``."""
    start = s.Message(
        id=head.id,
        model=head.model,
        content=[],
        stop_reason=None,
        usage=s.Usage(input_tokens=input_tokens, output_tokens=0),
    )
    yield {"type": "message_start", "message": start.model_dump()}
    yield {"type": "ping"}
    index, open_kind = -1, None  # the block being written: its index and its type
    thought: list[str] = []  # the open thinking block's text, which its signature covers
    last = Chunk()

    def begin(block: dict[str, Any]) -> list[Event]:
        nonlocal index, open_kind
        events = end()
        index, open_kind = index + 1, block["type"]
        return [*events, {"type": "content_block_start", "index": index, "content_block": block}]

    def end() -> list[Event]:
        nonlocal open_kind
        if open_kind is None:
            return []
        events = []
        if open_kind == "thinking":  # signed just before its stop, as Anthropic's are
            sig = th.signature("".join(thought))
            events.append(delta({"type": "signature_delta", "signature": sig}))
            thought.clear()
        open_kind = None
        return [*events, {"type": "content_block_stop", "index": index}]

    def delta(d: dict[str, Any]) -> Event:
        return {"type": "content_block_delta", "index": index, "delta": d}

    async for _, chunk in stream:
        if chunk.reasoning and blocks:
            if open_kind != "thinking":
                for e in begin({"type": "thinking", "thinking": "", "signature": ""}):
                    yield e
            thought.append(chunk.reasoning)
            if shown:
                yield delta({"type": "thinking_delta", "thinking": chunk.reasoning})
        if chunk.text:
            if open_kind != "text":
                for e in begin({"type": "text", "text": ""}):
                    yield e
            yield delta({"type": "text_delta", "text": chunk.text})
        for d in chunk.tool_calls:
            if d.id is not None:  # a call's head: a block of its own
                block = {"type": "tool_use", "id": tool_use_id(d.id), "name": d.name, "input": {}}
                for e in begin(block):
                    yield e
            if d.arguments:
                yield delta({"type": "input_json_delta", "partial_json": d.arguments})
        if chunk.finish_reason is not None:
            last = chunk
    if index < 0:  # nothing said at all: one empty text block, as the reply has
        for e in begin({"type": "text", "text": ""}):
            yield e
    for e in end():
        yield e
    reason = stop_reason(last)
    usage = to_usage(last.usage)
    yield {
        "type": "message_delta",
        "delta": {
            "stop_reason": reason,
            "stop_sequence": last.stop_sequence if reason == "stop_sequence" else None,
        },
        "usage": usage.model_dump(),
    }
    yield {"type": "message_stop"}
