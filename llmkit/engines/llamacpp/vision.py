"""A vision model's projector on llama.cpp: its multimodal library (``mtmd``,
through the bindings' ``mtmd_cpp``) turns a chat prompt with image markers into
text tokens and images, and an image into the embeddings the text model reads.

Only that: the embeddings are decoded by the engine's own batched step (``step``)
into the shared KV pool, never by mtmd's helpers, so an image prompt batches with
text ones and its cells are cached like text (``engines.media``: placeholders).

Encoded images are kept a while (``EMBED_CACHE_BYTES``, least recently used
out first), keyed by the image's sha256: a question about an image whose cells
the pool lost (another history before it, an eviction) does not encode it again.

mtmd's context is not thread-safe: the request threads tokenize and the decode
thread encodes, each under the projector's lock.
"""

from __future__ import annotations

import collections
import ctypes
import hashlib
import io
import logging
import secrets
import threading
from dataclasses import dataclass, field

import numpy as np
from llama_cpp import _logger
from llama_cpp import mtmd_cpp as mtmd

from llmkit.core.types import Image
from llmkit.engines.media import ImagePrompt, image_key, placeholders
from llmkit.errors import EngineError, InvalidRequestError
from llmkit.models.fit_companions import IMAGE_EMBED_CACHE_BYTES

log = logging.getLogger("llmkit.engine.llamacpp")

#: Encoded images kept for reuse, in bytes of float32 embeddings (the fit check counts it).
EMBED_CACHE_BYTES = IMAGE_EMBED_CACHE_BYTES


@dataclass(eq=False)
class ImageChunk:
    """One image of a prompt, as mtmd cut it: encoded when first needed."""

    tile: str  # the image's sha256 and the tile's number: "SHA:N"
    n_tokens: int
    chunk: int  # an ``mtmd_input_chunk`` of our own (a copy), freed with this object
    free: object = field(repr=False, default=None)

    def __del__(self) -> None:
        if self.chunk and callable(self.free):
            self.free(self.chunk)
            self.chunk = 0


class Projector:
    """An mmproj GGUF loaded beside a text model."""

    def __init__(self, path: str, model: object, n_threads: int, n_embd: int) -> None:
        """``n_embd``: the text model's input embedding size (what an image yields per
        position)."""
        self.n_embd = n_embd
        # Its chatter (each tile it cuts, each prompt's text) goes where llama.cpp's
        # own goes: the bindings' logger, errors only unless verbose.
        mtmd.mtmd_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = n_threads
        params.warmup = False
        # A marker no user types: text that holds the default one ("<__media__>")
        # stays text, as llama-server's random marker keeps it.
        self._marker = f"<__media_{secrets.token_hex(16)}__>".encode()
        params.media_marker = self._marker
        ctx = mtmd.mtmd_init_from_file(path.encode(), model, params)
        if not ctx:
            raise EngineError(
                f"llama.cpp could not load the projector {path}: is it an mmproj GGUF made "
                "for this model (convert_hf_to_gguf.py --mmproj)?"
            )
        self.ctx = ctx
        self.path = path
        if not mtmd.mtmd_support_vision(ctx):
            self.close()
            raise EngineError(f"{path} is a projector for audio, not for images.")
        if mtmd.mtmd_decode_use_mrope(ctx):
            # M-RoPE gives an image's cells 2-D positions, not one per placeholder.
            self.close()
            raise EngineError(
                f"{path}: models with M-RoPE image positions (Qwen2-VL and its kin) are not "
                "supported by llmkit's llama.cpp engine yet."
            )
        self.marker = self._marker.decode()
        self._lock = threading.Lock()
        self._embeds: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._embed_bytes = 0
        self.encoded = 0  # tiles encoded, all told (an image is one or more: tests read it)

    def close(self) -> None:
        if self.ctx:
            mtmd.mtmd_free(self.ctx)
            self.ctx = None

    # -- prompts ----------------------------------------------------------------------

    def tokenize(self, text: str, images: list[Image], add_bos: bool) -> ImagePrompt:
        """``text``, with one marker per image (in order), as text tokens and image
        placeholders."""
        bitmaps = [_bitmap(img) for img in images]
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            raw = text.encode("utf-8")
            inp = mtmd.mtmd_input_text(raw, len(raw), add_bos, True)
            arr = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            with self._lock:
                rc = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), arr, len(bitmaps))
            if rc == 1:
                raise InvalidRequestError(
                    f"The prompt has a different number of image markers ({self.marker}) "
                    f"than images ({len(images)}).",
                    param="messages",
                )
            if rc != 0:
                raise InvalidRequestError(
                    "An image could not be read for this model's projector.", param="messages"
                )
            return self._flatten(chunks)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            for b in bitmaps:
                mtmd.mtmd_bitmap_free(b)

    def _flatten(self, chunks: int) -> ImagePrompt:
        tokens: list[int] = []
        found: dict[int, ImageChunk] = {}
        seen: collections.Counter[str] = collections.Counter()
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens.extend(ptr[: n.value])
            elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                # A large image is cut into tiles (and an overview), each a chunk of
                # its own with the image's id: the tile's number tells them apart.
                sha = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
                tile = f"{sha}:{seen[sha]}"
                seen[sha] += 1
                n_tok = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                key = image_key(hashlib.sha256(tile.encode()).hexdigest())
                tokens.extend(placeholders(key, n_tok))
                own = mtmd.mtmd_input_chunk_copy(chunk)
                found[key] = ImageChunk(tile, n_tok, own, mtmd.mtmd_input_chunk_free)
            else:
                raise InvalidRequestError("Only images are taken here, no audio.")
        return ImagePrompt(tokens, found)

    def image_tokens(self, image: Image) -> int:
        """Prompt positions one image takes (its embeddings and the tokens around it)."""
        prompt = self.tokenize(self.marker, [image], add_bos=False)
        return len(prompt)

    # -- embeddings -------------------------------------------------------------------

    def embeddings(self, image: ImageChunk) -> np.ndarray:
        """The image's embeddings, (n_tokens, n_embd) float32: encoded now unless a
        recent request encoded the same image (decode thread)."""
        got = self._embeds.get(image.tile)
        if got is not None:
            self._embeds.move_to_end(image.tile)
            return got
        with self._lock:
            if mtmd.mtmd_encode_chunk(self.ctx, image.chunk) != 0:
                raise RuntimeError("the projector failed to encode an image")
            out = mtmd.mtmd_get_output_embd(self.ctx)
            n = image.n_tokens
            flat = np.ctypeslib.as_array(out, shape=(n * self.n_embd,))
            got = flat.reshape(n, -1).copy()
        self.encoded += 1
        self._embeds[image.tile] = got
        self._embed_bytes += got.nbytes
        while self._embed_bytes > EMBED_CACHE_BYTES and len(self._embeds) > 1:
            _, old = self._embeds.popitem(last=False)
            self._embed_bytes -= old.nbytes
        return got

    def non_causal(self, image: ImageChunk) -> bool:
        """Does the text model read this image's embeddings with full attention
        among them (Gemma 3), so that they must be decoded in one batch?"""
        return bool(mtmd.mtmd_decode_use_non_causal(self.ctx, image.chunk))


def _bitmap(img: Image) -> int:
    """An image as mtmd takes it: RGB bytes, row by row; its id is its sha256,
    which the image's chunk carries."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(img.data)) as pic:
            rgb = pic.convert("RGB")
    except (OSError, ValueError) as e:
        raise InvalidRequestError(f"An image could not be decoded: {e}", param="messages") from e
    raw = rgb.tobytes()
    buf = (ctypes.c_uint8 * len(raw)).from_buffer_copy(raw)
    bitmap = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, buf)
    if not bitmap:
        raise EngineError("mtmd could not take an image")
    mtmd.mtmd_bitmap_set_id(bitmap, img.sha256.encode())
    return bitmap
