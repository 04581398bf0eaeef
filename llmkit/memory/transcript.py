"""A stored conversation as a portable document: JSON export/import and Markdown.

Pure functions over the store's ``Conversation`` and ``Entry`` values, so
``llmkit sessions export/import`` and the store's own methods share one format.
The JSON form is what ``Store.export`` returns and ``Store.import_`` reads back:

    {"version": 1, "name", "model", "url", "system", "memory", "summary",
     "summary_covers": k,   # the summary folds messages[:k]
     "created_at", "updated_at",          # ISO 8601, UTC
     "messages": [{"role", "content", "interrupted", "created_at",
                   "reasoning",             # only where a turn has some
                   "images": [sha256, ...]}, ...],  # only where a turn has some
     "images": {sha256: {"mime", "width", "height", "data"}}}  # base64, once each

Entry ids stay in the database they came from; the summary's coverage travels as
a message count instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, get_args

from llmkit.core.types import Image, Role
from llmkit.errors import InvalidRequestError
from llmkit.memory.images import check_imported, image_to_json
from llmkit.memory.strategies import parse_strategy

if TYPE_CHECKING:
    from llmkit.memory.records import Conversation, Entry

VERSION = 1
_ROLES = get_args(Role)


def to_dict(conv: Conversation, entries: list[Entry]) -> dict[str, Any]:
    pictures = {i.sha256: i for e in entries for i in e.images}
    return {
        "version": VERSION,
        "name": conv.name,
        "model": conv.model,
        "url": conv.url,
        "system": conv.system,
        "memory": conv.memory,
        "summary": conv.summary,
        "summary_covers": conv.summarized(entries),
        "created_at": conv.created_at.isoformat(),
        "updated_at": conv.updated_at.isoformat(),
        "messages": [
            {
                "role": e.role,
                "content": e.content,
                "interrupted": e.interrupted,
                "created_at": e.created_at.isoformat(),
                **({"reasoning": e.reasoning} if e.reasoning else {}),
                **({"images": [i.sha256 for i in e.images]} if e.images else {}),
            }
            for e in entries
        ],
        **(
            {
                "images": {
                    sha: {k: v for k, v in image_to_json(i).items() if k != "sha256"}
                    for sha, i in pictures.items()
                }
            }
            if pictures
            else {}
        ),
    }


def to_markdown(conv: Conversation, entries: list[Entry]) -> str:
    lines = [f"# {conv.name}", ""]
    facts = [("model", conv.model), ("memory", conv.memory)]
    facts += [("created", _stamp(conv.created_at)), ("last used", _stamp(conv.updated_at))]
    lines += [f"- {k}: {v}" for k, v in facts if v] + [""]
    if conv.system:
        lines += ["## System", "", conv.system, ""]
    if conv.summary:
        lines += ["## Summary of earlier turns", "", conv.summary, ""]
    for e in entries:
        lines += [f"## {e.role.capitalize()}", ""]
        if e.reasoning:  # quoted above the answer: apart from it in any Markdown viewer
            quoted = [f"> {line}".rstrip() for line in e.reasoning.splitlines()]
            lines += ["> *Thinking*", ">", *quoted, ""]
        lines += [f"![image](sha256:{i.sha256})" for i in e.images]
        lines += ([""] if e.images else []) + [e.content, ""]
        if e.interrupted:
            lines += ["*(interrupted: this reply did not finish)*", ""]
    return "\n".join(lines)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class ImportedMessage:
    role: Role
    content: str
    interrupted: bool
    created_at: datetime
    reasoning: str = ""
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class Imported:
    """An exported conversation, checked, ready for the store to insert."""

    name: str
    model: str | None
    url: str | None
    system: str | None
    memory: str
    summary: str | None
    summary_covers: int
    created_at: datetime
    updated_at: datetime
    messages: list[ImportedMessage]


def from_dict(data: Any, *, name: str | None = None) -> Imported:
    """Check an export document; ``InvalidRequestError`` says what is wrong with it."""
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        _bad("it is not an llmkit conversation export (no 'messages' list)")
    if data.get("version", VERSION) != VERSION:
        _bad(f"version {data.get('version')!r} is not one this llmkit reads ({VERSION})")
    now = datetime.now(UTC)
    msgs = []
    pictures = data.get("images") or {}
    if not isinstance(pictures, dict):
        _bad("'images' must map each image's sha256 to the image")
    checked: dict[str, Image] = {}
    for i, m in enumerate(data["messages"]):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            _bad(f"message {i} has no valid role (one of {', '.join(_ROLES)})")
        if not isinstance(m.get("content"), str):
            _bad(f"message {i} has no text 'content'")
        if not isinstance(m.get("reasoning", ""), str):
            _bad(f"message {i} has a 'reasoning' that is not text")
        when = _time(m.get("created_at"), f"message {i}", now)
        interrupted, thought = bool(m.get("interrupted")), m.get("reasoning") or ""
        shas = m.get("images") or []
        if not isinstance(shas, list) or (shas and m["role"] != "user"):
            _bad(f"message {i} has 'images' that are not a user turn's list of hashes")
        for sha in shas:
            if not isinstance(sha, str) or sha not in pictures:
                _bad(f"message {i} names an image the document does not hold: {sha!r}")
            if sha not in checked:
                checked[sha] = check_imported(pictures[sha], sha, f"images.{sha[:12]}")
        seen = tuple(checked[sha] for sha in shas)
        msgs.append(ImportedMessage(m["role"], m["content"], interrupted, when, thought, seen))
    for key in ("model", "url", "system", "summary"):
        if data.get(key) is not None and not isinstance(data[key], str):
            _bad(f"'{key}' must be text")
    covers = data.get("summary_covers") or 0
    if not isinstance(covers, int) or not 0 <= covers <= len(msgs):
        _bad("'summary_covers' must count some of the messages")
    name = name if name is not None else data.get("name")
    if not isinstance(name, str):
        _bad("it has no 'name'; give one")
    created = _time(data.get("created_at"), "the conversation", now)
    last = msgs[-1].created_at if msgs else created
    return Imported(
        name=name,
        model=data.get("model"),
        url=data.get("url"),
        system=data.get("system"),
        memory=str(parse_strategy(data.get("memory") or "buffer")),
        summary=data.get("summary"),
        summary_covers=covers if data.get("summary") is not None else 0,
        created_at=created,
        updated_at=_time(data.get("updated_at"), "the conversation", last),
        messages=msgs,
    )


def _time(value: Any, what: str, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        _bad(f"{what} has a bad timestamp {value!r} (want ISO 8601)")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _bad(why: str) -> NoReturn:
    raise InvalidRequestError(f"Can't import this conversation: {why}.", param="file")
