"""``ModelView``: what the model listings of both dialects show of a served model.

The registry's ``ServedModel`` is a live object (it loads, unloads, counts
requests). The dialects' converters are pure functions, so a route takes this
snapshot of it and hands the converter plain values instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmkit.api.local_catalog import LocalCatalog
from llmkit.core.types import EngineInfo
from llmkit.engines.registry import ModelRegistry, ServedModel


@dataclass(frozen=True)
class ModelView:
    names: tuple[str, ...]  # the first is the canonical name, the rest aliases
    info: EngineInfo
    created: int  # unix seconds: when the weights were made (the file's time)
    loaded: bool
    expires_at: float | None  # unix seconds of the next unload; None: kept for good
    running: int = 0  # generations running on it now
    queued: int = 0  # requests waiting for a free sequence
    speculation: tuple[tuple[str, int], ...] = ()  # ``Engine.speculation``'s counts

    @property
    def speculative(self) -> str:
        """Speculative decoding as ``llmkit ps`` shows it: the mode, and the share of
        drafted tokens accepted so far ("ngram 72%"); "" where the engine does none."""
        mode = self.info.details.get("speculative")
        if not isinstance(mode, str):
            return ""
        counts = dict(self.speculation)
        drafted = counts.get("drafted", 0)
        if mode == "off" or not drafted:
            return mode
        return f"{mode} {round(100 * counts.get('accepted', 0) / drafted)}%"

    @property
    def slots(self) -> int:
        """Sequences it runs at once (``--parallel``); 0 where the engine does not say."""
        n = self.info.details.get("parallel", 0)
        return n if isinstance(n, int) else 0

    @property
    def context_length(self) -> int:
        return self.info.context_length


def view(model: ServedModel) -> ModelView:
    running, queued = model.engine.load()
    return ModelView(
        names=tuple(model.names),
        info=model.info,
        created=model.created,
        loaded=model.loaded,
        expires_at=model.expires_at,
        running=running,
        queued=queued,
        speculation=tuple(model.engine.speculation().items()),
    )


def views(models: list[ServedModel]) -> list[ModelView]:
    return [view(m) for m in models]


def catalog_views(registry: ModelRegistry, local: LocalCatalog | None) -> list[ModelView]:
    """The served models, then the local catalog's models not served yet (served on
    demand when a request names them), as Ollama lists everything on its disk."""
    out = views(registry.models)
    if local is not None:
        for name, info, created in local.listed():
            out.append(ModelView((name,), info, created, loaded=False, expires_at=None))
    return out
