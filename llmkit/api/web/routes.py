"""``GET /`` for browsers: the chat page; for everything else, Ollama's
"Ollama is running" (Ollama clients probe for it). The page's files are served
from ``static/`` without a key, like ``/`` itself: they hold no data, and a
browser can't put a key on a ``<script src>``; the page asks for the key and
sends it on its API calls.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

from llmkit.api.ollama.routes import is_running

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"

router = APIRouter(include_in_schema=False)
_TYPES = {".js": "text/javascript", ".css": "text/css", ".woff2": "font/woff2"}


def asset_paths() -> frozenset[tuple[str, str]]:
    """The page's files, as the guard's open (method, path) pairs."""
    files = [p for p in STATIC.rglob("*") if p.is_file() and p.suffix in _TYPES]
    return frozenset(
        (m, f"{PREFIX}/{p.relative_to(STATIC).as_posix()}") for p in files for m in ("GET", "HEAD")
    )


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@router.get("/")
async def home(request: Request) -> Response:
    if not wants_html(request):
        return PlainTextResponse(await is_running())
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get(PREFIX + "/{path:path}")
async def asset(path: str) -> Response:
    file = (STATIC / path).resolve()
    if STATIC not in file.parents or not file.is_file() or file.suffix not in _TYPES:
        return PlainTextResponse("Not found.", status_code=404)
    headers = {"Cache-Control": "no-cache"}
    return FileResponse(file, media_type=_TYPES[file.suffix], headers=headers)
