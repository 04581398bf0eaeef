"""A conversation's images in the store: content-addressed, kept once each.

An image is stored once in ``images``, keyed by the SHA-256 of its bytes, however
many turns (of however many conversations) carry it; ``message_images`` links a
message to its images in order. Deleting messages drops their links, and an
image no message links any more goes with them (``drop_orphans``). Images a
store gives back were checked when they came in, so they are not decoded
again. Here too: the JSON form of an image (``image_to_json``), for the export
document and the Responses store, and the cheap reading of a JSON one back.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmkit.core.types import Image
from llmkit.errors import InvalidRequestError
from llmkit.memory.migrations import images as I
from llmkit.memory.migrations import message_images as L


def save(conn: Connection, message_id: int, images: Sequence[Image]) -> None:
    """Link ``images`` to the message, in order; store each image not stored yet."""
    if not images:
        return
    now = datetime.now(UTC)
    for image in {i.sha256: i for i in images}.values():
        row = dict(
            sha256=image.sha256,
            mime=image.mime,
            width=image.width,
            height=image.height,
            data=image.data,
            created_at=now,
        )
        # Another writer may store the same image at the same moment: keep theirs.
        if conn.dialect.name in ("sqlite", "postgresql"):
            insert = _dialect_insert(conn.dialect.name)(I).values(**row).on_conflict_do_nothing()
            conn.execute(insert)
        elif conn.scalar(sa.select(I.c.sha256).where(I.c.sha256 == image.sha256)) is None:
            conn.execute(I.insert().values(**row))
    conn.execute(
        L.insert(),
        [
            dict(message_id=message_id, position=n, sha256=i.sha256, detail=i.detail)
            for n, i in enumerate(images)
        ],
    )


def _dialect_insert(name: str) -> Any:
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


def load(conn: Connection, message_ids: Iterable[int]) -> dict[int, tuple[Image, ...]]:
    """Each message's images, in order (messages without any are left out)."""
    ids = list(message_ids)
    if not ids:
        return {}
    query = (
        sa.select(L.c.message_id, L.c.detail, I)
        .join(I, I.c.sha256 == L.c.sha256)
        .where(L.c.message_id.in_(ids))
        .order_by(L.c.message_id, L.c.position)
    )
    out: dict[int, list[Image]] = {}
    for r in conn.execute(query):
        out.setdefault(r.message_id, []).append(_image(r, r.detail))
    return {k: tuple(v) for k, v in out.items()}


def get(conn: Connection, sha256: str) -> Image | None:
    """The stored image with this hash, if a message links it."""
    linked = sa.select(L.c.sha256).where(L.c.sha256 == sha256).limit(1).scalar_subquery()
    row = conn.execute(sa.select(I).where(I.c.sha256 == linked)).first()
    return None if row is None else _image(row)


def unlink(conn: Connection, message_ids: sa.Select[Any]) -> None:
    """Drop the links of the messages ``message_ids`` selects (before they go),
    then every image no message links any more."""
    conn.execute(L.delete().where(L.c.message_id.in_(message_ids)))
    drop_orphans(conn)


def drop_orphans(conn: Connection) -> None:
    conn.execute(I.delete().where(I.c.sha256.not_in(sa.select(L.c.sha256))))


def _image(r: Any, detail: str = "auto") -> Image:
    return Image(r.data, r.mime, r.sha256, r.width, r.height, detail)  # type: ignore[arg-type]


# -- the JSON form ------------------------------------------------------------------------


def image_to_json(image: Image, *, with_data: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sha256": image.sha256,
        "mime": image.mime,
        "width": image.width,
        "height": image.height,
    }
    if image.detail != "auto":
        out["detail"] = image.detail
    if with_data:
        out["data"] = base64.b64encode(image.data).decode("ascii")
    return out


def image_from_json(d: dict[str, Any]) -> Image:
    """An image this store wrote (a Responses turn's): trusted, not decoded again."""
    return Image(
        base64.b64decode(d["data"]),
        d["mime"],
        d["sha256"],
        d["width"],
        d["height"],
        d.get("detail", "auto"),
    )


def check_imported(d: Any, sha256: str, where: str) -> Image:
    """An export document's image, checked as any image coming in is: its bytes
    decoded and bounded (``core.images``), and its hash matching its key."""
    from llmkit.core.images import ImageError, from_base64

    if not isinstance(d, dict) or not isinstance(d.get("data"), str):
        raise InvalidRequestError(
            f"Can't import this conversation: {where} has no base64 'data'.", param="file"
        )
    try:
        image = from_base64(d["data"], param=where)
    except ImageError as e:
        raise InvalidRequestError(
            f"Can't import this conversation: {e.message}", param="file"
        ) from e
    if image.sha256 != sha256:
        raise InvalidRequestError(
            f"Can't import this conversation: {where}'s data does not hash to its key.",
            param="file",
        )
    return image


# -- what a caller hands ``Chat`` ---------------------------------------------------------

ImageInput = Image | bytes | str | os.PathLike[str]


def as_image(source: ImageInput, where: str = "images") -> Image:
    """A path (str or Path), bytes or an ``Image``, checked as a server checks one
    (``core.images``, the default bounds): a bad file fails here, before anything
    is stored or sent."""
    from llmkit.core.images import DEFAULT_LIMITS, ImageError, check_bytes, from_bytes

    if isinstance(source, Image):
        return source
    try:
        if isinstance(source, bytes):
            return from_bytes(source, param=where)
        path = Path(source).expanduser()
        try:
            check_bytes(path.stat().st_size, DEFAULT_LIMITS, str(path))  # before reading it
            data = path.read_bytes()
        except OSError as e:
            raise InvalidRequestError(
                f"Can't read the image {path}: {e.strerror or e}", param=where
            ) from e
        return from_bytes(data, param=str(path))
    except ImageError as e:
        raise InvalidRequestError(e.message, param=where) from e
