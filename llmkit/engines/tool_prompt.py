"""Tools and tool turns as a chat template takes them.

A template that knows tools (it reads a ``tools`` variable and messages'
``tool_calls``: Qwen 2.5, Llama 3.1, Mistral, Hermes...) gets them as Hugging
Face's ``apply_chat_template`` passes them. One that does not (SmolLM2's, plain
ChatML) gets the generic format, in messages it can render:

- the tools, as JSON, at the end of the system message (one is added first if
  there is none), with how to call them;
- an assistant turn's calls, as ``<tool_call>`` blocks after its text;
- each tool result, as a ``<tool_response>`` block in a user turn (results in a
  row share one turn), since such templates have no tool role.

Either way an assistant turn's thinking goes in under the names templates read
it by (``reasoning_content``, and ``thinking`` for gpt-oss and Magistral), as
Hugging Face passes it; the template decides whether the model sees it.

Pure functions over core types; ``chat_template`` renders what they return.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llmkit.core.tools import tools_as_json
from llmkit.core.types import Message, Tool, ToolCall
from llmkit.engines.families.hermes import CLOSE, OPEN

_READS_TOOLS = re.compile(r"\btools\b")

SYSTEM_TOOLS = """You can call functions. They are described below in JSON Schema:
<tools>
{tools}
</tools>
To call a function, reply with one block per call, in exactly this form:
<tool_call>
{{"name": "<function name>", "arguments": {{<the arguments as a JSON object>}}}}
</tool_call>
The results come back in <tool_response> blocks."""


def template_knows_tools(template: str) -> bool:
    return bool(_READS_TOOLS.search(template)) and "tool_calls" in template


def template_messages(
    messages: tuple[Message, ...], tools: tuple[Tool, ...], *, native: bool
) -> list[dict[str, Any]]:
    """The ``messages`` variable of a template: native tool turns, or the generic format."""
    if native:
        return [_native(m) for m in messages]
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            block = f"<tool_response>\n{m.content}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
        elif m.tool_calls:
            calls = "\n".join(call_block(c) for c in m.tool_calls)
            content = f"{m.content}\n{calls}".lstrip()
            out.append(_reasoning(m, {"role": m.role, "content": content}))
        else:
            out.append(_reasoning(m, {"role": m.role, "content": m.content}))
    for d in out:
        d.pop("tool_results", None)
    if tools:
        listed = "\n".join(json.dumps(t) for t in tools_as_json(tools))
        described = SYSTEM_TOOLS.format(tools=listed)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{described}".lstrip()
        else:
            out.insert(0, {"role": "system", "content": described})
    return out


def call_block(call: ToolCall) -> str:
    """A call as the model writes it (and as the parser reads it)."""
    body = json.dumps({"name": call.name, "arguments": _arguments(call)}, ensure_ascii=False)
    return f"{OPEN}\n{body}\n{CLOSE}"


def _native(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                # Templates write the arguments with ``tojson``: an object, as HF passes it.
                "function": {"name": c.name, "arguments": _arguments(c)},
            }
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        d["tool_call_id"] = m.tool_call_id
    return _reasoning(m, d)


def _reasoning(m: Message, d: dict[str, Any]) -> dict[str, Any]:
    """An earlier turn's thinking, under the names templates read it by: most read
    ``reasoning_content`` (Qwen3, DeepSeek, GLM, Kimi...), gpt-oss and Magistral read
    ``thinking``; Hugging Face fills both from whichever a caller gives."""
    if m.reasoning:
        d = {"thinking": m.reasoning, **d, "reasoning_content": m.reasoning}
    return d


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments_json)
    except ValueError:
        return call.arguments_json  # what the caller sent, as it is
