"""Thinking in the Responses API: ``reasoning: {effort, summary}`` read into
core's switch, and the ``reasoning`` items that carry a reply's thinking.

A reasoning item comes before the message it led to, as OpenAI's do: an id
``rs_...``, no summary (llmkit writes none: ``summary`` is asked for and
echoed, and answered with ``[]``), and the thinking itself as one
``reasoning_text`` part. Sent back in ``input`` (a client keeping its own
context), it joins the assistant turn that follows it as ``Message.reasoning``;
the family's chat template decides whether the model sees it again.

A client that keeps no state on the server (``store: false``, Codex's way)
asks for ``include: ["reasoning.encrypted_content"]`` and sends back only
that field of each item; llmkit has no secret to encrypt with, so the field
carries the thinking itself, encoded (``llmkit.`` and base64url), and a
reasoning item that comes back with it alone still gives its thinking.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from llmkit.api.reasoning import OPENAI_EFFORTS, quoted, read_effort
from llmkit.api.responses.schemas import ResponseCreateRequest
from llmkit.core.types import Effort
from llmkit.errors import InvalidRequestError

SUMMARIES = ("auto", "concise", "detailed")
ENCRYPTED = "reasoning.encrypted_content"  # the ``include`` value that asks for it
_SEALED = "llmkit."


def seal(text: str) -> str:
    """A thinking as ``encrypted_content``: opaque to clients, readable by ``unseal``."""
    return _SEALED + base64.urlsafe_b64encode(text.encode()).decode()


def unseal(value: object) -> str:
    """The thinking ``seal`` wrote, or "" for anything else (another server's)."""
    if not isinstance(value, str) or not value.startswith(_SEALED):
        return ""
    try:
        return base64.urlsafe_b64decode(value[len(_SEALED) :]).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def read_reasoning(
    req: ResponseCreateRequest,
) -> tuple[bool | None, Effort | None, dict[str, Any]]:
    """``(think, effort, echo)``: the switch, the effort, and the ``reasoning``
    object a Response repeats."""
    cfg = req.reasoning
    if cfg is None:
        return None, None, {"effort": None, "summary": None}
    think, effort = read_effort(cfg.effort, OPENAI_EFFORTS, "reasoning.effort")
    summary = cfg.summary if cfg.summary is not None else cfg.generate_summary
    if summary is not None and summary not in SUMMARIES:
        raise InvalidRequestError(
            f"reasoning.summary must be one of {quoted(SUMMARIES)}; got {summary!r}.",
            param="reasoning.summary",
        )
    return think, effort, {"effort": cfg.effort, "summary": summary}


def reasoning_item(
    item_id: str, text: str, status: str = "completed", *, sealed: bool = False
) -> dict[str, Any]:
    """``sealed``: with ``encrypted_content`` (asked for with ``include``)."""
    content = [{"type": "reasoning_text", "text": text}] if text else []
    item = {"id": item_id, "type": "reasoning", "summary": [], "content": content}
    if sealed:
        item["encrypted_content"] = seal(text)
    return item | {"status": status}


def read_reasoning_item(item: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """A reasoning item sent back in ``input``: as stored (but its id), and its
    thinking (the ``reasoning_text`` parts, else what ``encrypted_content``
    carries, else the summary's text)."""
    texts = []
    for key, kinds in (("content", ("reasoning_text",)), ("summary", ("summary_text",))):
        parts = item.get(key) or []
        if not isinstance(parts, list):
            raise InvalidRequestError(f"{where}.{key} must be a list.", param=f"{where}.{key}")
        for j, part in enumerate(parts):
            if (
                not isinstance(part, dict)
                or part.get("type") not in kinds
                or not isinstance(part.get("text"), str)
            ):
                raise InvalidRequestError(
                    f"{where}.{key}.{j} must be a {kinds[0]} part with a 'text' string.",
                    param=f"{where}.{key}.{j}",
                )
            texts.append(part["text"])
        if texts:
            break  # the thinking itself where given; a summary only without it
        if key == "content" and unseal(item.get("encrypted_content")):
            texts.append(unseal(item.get("encrypted_content")))
            break
    stored = {
        "type": "reasoning",
        "summary": item.get("summary") or [],
        "content": item.get("content") or [],
        **(
            {"encrypted_content": item["encrypted_content"]}
            if item.get("encrypted_content")
            else {}
        ),
        "status": "completed",
    }
    return stored, "".join(texts)
