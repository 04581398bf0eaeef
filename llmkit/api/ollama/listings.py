"""Ollama's model listings, as pure functions of plain ``ModelView`` values:
``/api/tags`` (every served name), ``/api/ps`` (the loaded ones, with when they
unload) and ``/api/show`` (one model's header, template and details).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from llmkit.api.models_view import ModelView
from llmkit.api.ollama import schemas as s
from llmkit.api.ollama.replies import rfc3339
from llmkit.core.types import EngineInfo
from llmkit.models.modelfile import Modelfile, modelfile_text


def tagged(name: str) -> str:
    """Ollama's listing name: an untagged name is ``name:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def digest(m: ModelView) -> str:
    """Identifies the weights as served (file, size, time); hashing gigabytes of
    weights on every listing would be too slow."""
    key = f"{m.info.model}\0{m.info.size_bytes}\0{m.created}".encode()
    return hashlib.sha256(key).hexdigest()


def details(info: EngineInfo) -> s.ModelDetails:
    return s.ModelDetails(
        format=info.format,
        family=info.family,
        families=[info.family] if info.family else None,
        parameter_size=info.parameter_size,
        quantization_level=info.quantization,
        # A LoRA adapter served as a model: the served model whose weights it runs on.
        parent_model=str(info.details.get("base_model", "")),
    )


def _modified(m: ModelView) -> str:
    return rfc3339(datetime.fromtimestamp(m.created, UTC))


def to_tags(models: list[ModelView]) -> s.TagsResponse:
    return s.TagsResponse(
        models=[
            s.ListedModel(
                name=tagged(name),
                model=tagged(name),
                modified_at=_modified(m),
                size=m.info.size_bytes,
                digest=digest(m),
                details=details(m.info),
                capabilities=list(m.info.capabilities),
            )
            for m in models
            for name in m.names
        ]
    )


def to_ps(models: list[ModelView], *, now: datetime) -> s.PsResponse:
    """The models loaded now, each with when it will be unloaded (a model kept
    for good shows a time far in the future, as Ollama shows keep_alive -1)."""
    forever = now + timedelta(days=365 * 100)

    def expires(m: ModelView) -> str:
        when = forever if m.expires_at is None else datetime.fromtimestamp(m.expires_at, UTC)
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return s.PsResponse(
        models=[
            s.RunningModel(
                name=tagged(name),
                model=tagged(name),
                size=m.info.size_bytes,
                digest=digest(m),
                details=details(m.info),
                expires_at=expires(m),
                context_length=m.context_length,
                engine=m.info.engine,
                served_as=m.names[0],
                slots=m.slots,
                slots_in_use=m.running,
                queue=m.queued,
                speculative=m.speculative,
            )
            for m in models
            if m.loaded
            for name in m.names
        ]
    )


def to_show(m: ModelView, made: Modelfile | None = None) -> s.ShowResponse:
    info = m.info
    model_info: dict[str, Any] = {
        k: _number(v) for k, v in info.metadata.items() if k != "tokenizer.chat_template"
    }
    model_info["general.parameter_count"] = info.parameter_count
    for key in ("base_model", "adapters"):  # a LoRA adapter's base and the adapters applied
        if key in info.details:
            model_info[f"llmkit.lora.{key}"] = info.details[key]
    params = f"num_ctx {info.context_length}"
    if made is not None:
        # num_ctx is the context served with, said first; the Modelfile's would repeat it.
        own = [f"{k} {v}" for k, v in made.parameters.items() if k != "num_ctx"]
        params = "\n".join([params, *own])
    text = modelfile_text(info.model, made)
    ctx = f"num_ctx {info.context_length}"
    return s.ShowResponse(
        license=info.license,
        modelfile=f"# served by llmkit ({info.engine})\n{text}PARAMETER {ctx}\n",
        parameters=params,
        template=(made.template if made and made.template else info.chat_template),
        system=made.system if made else None,
        details=details(info),
        model_info=model_info,
        capabilities=list(info.capabilities),
        modified_at=_modified(m),
    )


def _number(v: str) -> Any:
    """GGUF header values arrive as text; Ollama's model_info carries numbers."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v
