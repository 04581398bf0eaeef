"""A request's images, read before any generation starts: the step between a
dialect's wire model and its pure converter.

Each dialect's request lists where its images are (``image_refs()``: a data URI,
an ``http(s)`` URL or bare base64, with the field it came from) and counts them
in its ``sizes()``, so ``--max-images`` is checked with the other limits. A route
then awaits ``read_images``, which, in this order and before any work on the
model: refuses images sent to a model that cannot see (its ``capabilities``
lack "vision"), refuses URLs unless the operator allowed fetching
(``--image-fetch``), fetches the allowed ones (all of them within
``--image-fetch-timeout``, each within ``--max-image-mb``, counted as it
arrives), and decodes every image once in a worker thread (``core.images``: the
bounds, the format, a whole decode). The ``Images`` it returns hands each
converter the decoded ``Image`` for a source, so the converters stay pure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import httpx
from starlette.requests import Request

from llmkit.core import images as ci
from llmkit.core.images import Detail, ImageLimits
from llmkit.core.types import EngineInfo, Image
from llmkit.engines.local import LocalEngine
from llmkit.engines.registry import ServedModel
from llmkit.errors import InvalidRequestError, VisionUnsupportedError

MAX_REDIRECTS = 3


@dataclass(frozen=True)
class ImageRef:
    """Where one image of a request is: ``kind`` "url" for a data URI or an
    ``http(s)`` URL, "base64" for bare base64; ``param`` is the field's path."""

    source: str
    param: str
    kind: Literal["url", "base64"] = "url"


def limits_of(settings: object) -> ImageLimits:
    """The image bounds of a server's settings (``--max-image-mb``, ``--max-image-pixels``)."""
    mb = getattr(settings, "max_image_mb", None)
    pixels = getattr(settings, "max_image_pixels", None)
    return ImageLimits(
        max_bytes=int(mb * ci.MIB) if mb else ci.DEFAULT_LIMITS.max_bytes,
        max_pixels=pixels or ci.DEFAULT_LIMITS.max_pixels,
    )


def _is_web(source: str) -> bool:
    return source[:7].lower() == "http://" or source[:8].lower() == "https://"


@contextlib.contextmanager
def as_400() -> Iterator[None]:
    """``core.images``' refusals as the dialects' 400 (``InvalidRequestError``)."""
    try:
        yield
    except ci.ImageError as e:
        raise InvalidRequestError(e.message, param=e.param) from e


def decode(ref: ImageRef, limits: ImageLimits) -> Image:
    """One image from its inline form (a URL must have been fetched: ``read_images``)."""
    with as_400():
        return _decode(ref, limits)


def _decode(ref: ImageRef, limits: ImageLimits) -> Image:
    if ref.kind == "base64":
        if ci.is_data_uri(ref.source):  # Ollama's clients send bare base64; some send data URIs
            return ci.from_data_uri(ref.source, limits, param=ref.param)
        return ci.from_base64(ref.source, limits, param=ref.param)
    if ci.is_data_uri(ref.source):
        return ci.from_data_uri(ref.source, limits, param=ref.param)
    if _is_web(ref.source):
        raise InvalidRequestError(
            f"The image in {ref.param} is a URL, and this server does not fetch images: send it "
            "as a base64 data URI, or start the server with --image-fetch.",
            param=ref.param,
        )
    raise InvalidRequestError(
        f"The image in {ref.param} must be a base64 data URI (data:image/png;base64,...) or an "
        "http(s) URL.",
        param=ref.param,
    )


class Images:
    """A request's images by source, read once; ``get`` gives one to a converter."""

    def __init__(self, limits: ImageLimits = ci.DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._read: dict[str, Image] = {}

    def get(self, ref: ImageRef, detail: Detail = "auto") -> Image:
        """The image at ``ref`` with the ``detail`` its part asked for. One not read
        yet (a converter called on its own) is decoded now, under the same bounds."""
        image = self._read.get(ref.source)
        if image is None:
            image = self._read[ref.source] = decode(ref, self.limits)
        return image if image.detail == detail else replace(image, detail=detail)

    def __len__(self) -> int:
        return len(self._read)


def refuse_images(model: str, info: EngineInfo, param: str) -> None:
    """The dialect's 400 for images sent to a model that cannot see, naming what it can do."""
    if "vision" not in info.capabilities:
        raise VisionUnsupportedError(model, list(info.capabilities), param=param)


def _describes(model: ServedModel) -> bool:
    # As for thinking: only a loaded local model says for sure what it can do;
    # a remote server or a model not loaded yet answers images itself.
    return model.loaded and isinstance(model.inner, LocalEngine)


async def read_images(
    request: Request,
    refs: Sequence[ImageRef],
    model: ServedModel,
    *,
    asked_as: str | None = None,
    param: str | None = None,
) -> Images:
    """Every image of a request, checked and decoded (see the module's docstring).
    A refusal for a model that cannot see names ``param`` (default: the first image's field)."""
    settings = request.app.state.settings
    images = Images(limits_of(settings))
    if not refs:
        return images
    if _describes(model):
        refuse_images(asked_as or model.name, model.info, param or refs[0].param)
    web = list({r.source: r for r in refs if r.kind == "url" and _is_web(r.source)}.values())
    fetched: dict[str, bytes] = {}
    if web:
        if not getattr(settings, "image_fetch", False):
            decode(web[0], images.limits)  # the refusal, naming the field
        fetched = await fetch_all(web, images.limits, settings.image_fetch_timeout)

    def decode_all() -> None:
        for ref in refs:
            if ref.source in images._read:
                continue
            if ref.source in fetched:
                with as_400():
                    image = ci.from_bytes(fetched[ref.source], images.limits, param=ref.param)
            else:
                image = decode(ref, images.limits)
            images._read[ref.source] = image

    await asyncio.to_thread(decode_all)  # a large image's decode would stall the event loop
    return images


async def fetch_all(
    refs: Sequence[ImageRef], limits: ImageLimits, timeout: float
) -> dict[str, bytes]:
    """Each URL's body; a 400 naming the first that is unreachable, answers an
    error, is too large, or has not all arrived ``timeout`` seconds after the start."""
    async with httpx.AsyncClient(
        follow_redirects=True, max_redirects=MAX_REDIRECTS, timeout=timeout, trust_env=False
    ) as http:
        try:
            async with asyncio.timeout(timeout):
                bodies = await asyncio.gather(*(_fetch(http, r, limits) for r in refs))
        except TimeoutError:
            late = refs[0] if len(refs) == 1 else None
            where = late.param if late else "the request's image URLs"
            raise InvalidRequestError(
                f"The image in {where} did not arrive within {timeout:g} seconds "
                "(--image-fetch-timeout).",
                param=late.param if late else None,
            ) from None
    return {r.source: b for r, b in zip(refs, bodies, strict=True)}


async def _fetch(http: httpx.AsyncClient, ref: ImageRef, limits: ImageLimits) -> bytes:
    with _fetch_errors(ref), as_400():
        async with http.stream("GET", ref.source, headers={"Accept": "image/*"}) as r:
            if r.status_code >= 400:
                raise InvalidRequestError(
                    f"The image URL in {ref.param} answered HTTP {r.status_code}.",
                    param=ref.param,
                )
            declared = r.headers.get("content-length")
            if declared and declared.isdigit():
                ci.check_bytes(int(declared), limits, ref.param)  # before reading any of it
            body = bytearray()
            async for piece in r.aiter_bytes():
                body += piece
                ci.check_bytes(len(body), limits, ref.param)  # a server that lied or said nothing
            return bytes(body)


@contextlib.contextmanager
def _fetch_errors(ref: ImageRef) -> Iterator[None]:
    try:
        yield
    except httpx.TooManyRedirects as e:
        raise InvalidRequestError(
            f"The image URL in {ref.param} redirects more than {MAX_REDIRECTS} times.",
            param=ref.param,
        ) from e
    except httpx.InvalidURL as e:
        raise InvalidRequestError(
            f"The image URL in {ref.param} is not valid: {e}", param=ref.param
        ) from e
    except httpx.HTTPError as e:
        raise InvalidRequestError(
            f"The image URL in {ref.param} could not be fetched: {type(e).__name__}: {e}",
            param=ref.param,
        ) from e
