"""Liveness: ``GET /health`` answers 200 once every engine is loaded, with what
each model is doing (running generations, queued requests)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    models = []
    ok = True
    for m in request.app.state.registry.models:
        healthy = await m.engine.health()
        ok = ok and healthy
        running, queued = m.engine.load()
        models.append({"name": m.name, "healthy": healthy, "running": running, "queued": queued})
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "models": models},
        status_code=200 if ok else 503,
    )
