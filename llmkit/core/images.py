"""Bytes into ``Image``: the one check every image passes, whoever brings it.

A dialect's base64 or data URI, a fetched URL's body (``api/images.py``), a
file a ``Chat`` caller names or a stored conversation's image all become an
``Image`` here, through the same bounds, in the order that keeps a bad image
cheap: its size in bytes first (a base64 text is measured before it is
decoded), then its header (Pillow reads the format and the pixel size without
decoding), the pixel count, and only then the whole decode that proves it is
not truncated or corrupt. Only the formats every vision projector's
preprocessing reads are taken: PNG, JPEG, WebP and GIF (the first frame).

Every refusal is an ``ImageError`` naming the field it came from (``param``)
and, for a size, the ``llmkit serve`` flag that sets the limit; callers turn it
into their 400 (core knows no error tree). No I/O: the caller brings the bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Literal

from llmkit.core.types import Image

Detail = Literal["auto", "low", "high"]
# Pillow's format names, and the media type each is known by on the wire.
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
MIB = 1024 * 1024


class ImageError(ValueError):
    """An image that cannot be taken: what is wrong, and the field it came from."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ImageLimits:
    """The bounds an image is checked against (``llmkit serve``'s flags set a server's)."""

    max_bytes: int = 20 * MIB
    max_pixels: int = 7680 * 4320  # 8K UHD


DEFAULT_LIMITS = ImageLimits()


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB / 10 else f"{int(n)} bytes"


def check_bytes(n: int, limits: ImageLimits, param: str) -> None:
    """A 400 for an image of ``n`` bytes over ``limits.max_bytes``."""
    if n > limits.max_bytes:
        raise ImageError(
            f"The image in {param} is {_mib(n)}; this server takes images of at most "
            f"{_mib(limits.max_bytes)} (--max-image-mb).",
            param=param,
        )


def from_base64(
    text: str, limits: ImageLimits = DEFAULT_LIMITS, *, param: str, detail: Detail = "auto"
) -> Image:
    """A bare base64 image (Ollama's ``images``, Anthropic's ``source.data``)."""
    # Decoded size is 3/4 of the text's: refuse a huge one before decoding it.
    check_bytes(len(text) * 3 // 4, limits, param)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # line-wrapped base64 (MIME style) is still base64
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise ImageError(f"The image in {param} is not valid base64.", param=param) from e
    return from_bytes(data, limits, param=param, detail=detail)


def is_data_uri(source: str) -> bool:
    return source[:5].lower() == "data:"


def from_data_uri(
    uri: str, limits: ImageLimits = DEFAULT_LIMITS, *, param: str, detail: Detail = "auto"
) -> Image:
    """``data:image/png;base64,...``. The declared media type is not trusted: the
    bytes say what the image is (a mislabelled PNG is still read as a PNG)."""
    head, comma, body = uri.partition(",")
    if not comma or not head.lower().endswith(";base64"):
        raise ImageError(
            f"The image in {param} must be a base64 data URI (data:image/png;base64,...).",
            param=param,
        )
    return from_base64(body, limits, param=param, detail=detail)


def from_bytes(
    data: bytes, limits: ImageLimits = DEFAULT_LIMITS, *, param: str, detail: Detail = "auto"
) -> Image:
    """``data`` checked and described: size, format, pixels, then a whole decode."""
    from PIL import Image as PILImage  # Pillow loads its plugins on first use: not at import
    from PIL import UnidentifiedImageError

    check_bytes(len(data), limits, param)
    if not data:
        raise ImageError(f"The image in {param} is empty.", param=param)
    with warnings.catch_warnings():
        # Pillow's own bomb guard warns, then raises past twice its limit; ours is
        # the pixel check below, with the flag's own number in the message.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            img = PILImage.open(io.BytesIO(data))  # reads the header only
        except PILImage.DecompressionBombError as e:
            raise _too_many_pixels(None, limits, param) from e
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise ImageError(
                f"The image in {param} is not an image this server can read: use PNG, JPEG, "
                "WebP or GIF.",
                param=param,
            ) from e
        with img:
            if img.format not in FORMATS:
                raise ImageError(
                    f"The image in {param} is {img.format or 'of an unknown format'}; this "
                    "server takes PNG, JPEG, WebP and GIF images.",
                    param=param,
                )
            width, height = img.size
            if width < 1 or height < 1 or width * height > limits.max_pixels:
                raise _too_many_pixels((width, height), limits, param)
            try:
                img.load()  # the whole decode: a truncated or corrupt image fails here
            except Exception as e:  # Pillow's decoders raise OSError, ValueError, SyntaxError...
                raise ImageError(
                    f"The image in {param} is corrupt or truncated ({img.format}): {e}",
                    param=param,
                ) from e
            mime = FORMATS[img.format]
    return Image(
        data=data,
        mime=mime,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        detail=detail,
    )


def _too_many_pixels(size: tuple[int, int] | None, limits: ImageLimits, param: str) -> ImageError:
    what = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return ImageError(
        f"The image in {param} is {what}; this server takes images of at most "
        f"{limits.max_pixels} pixels (--max-image-pixels).",
        param=param,
    )


def to_data_uri(image: Image) -> str:
    """The image as a data URI (what OpenAI's ``image_url`` carries)."""
    return f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"


def to_base64(image: Image) -> str:
    return base64.b64encode(image.data).decode("ascii")
