"""Liveness: ``GET /health`` answers 200 once the models served with ``load:
startup`` are loaded, with what each model is doing: its ``state`` (loading,
ready, failed, unloaded), the reason of a failure, running generations, queued
requests, KV-cache cells and speculative decoding's drafted and accepted
tokens; 503 while an engine is down (a vLLM restarting)."""

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
        entry = {
            "name": m.name,
            "state": await m.state(),
            "loaded": m.loaded,
            "healthy": healthy,
            "running": running,
            "queued": queued,
        }
        if m.load_error:
            entry["error"] = m.load_error
        if cells := m.engine.kv_cache():
            entry["kv_cache"] = cells
        if spec := m.engine.speculation():
            entry["speculative"] = spec
        models.append(entry)
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "models": models},
        status_code=200 if ok else 503,
    )
