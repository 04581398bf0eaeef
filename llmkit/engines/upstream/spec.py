"""The upstream engine's declaration: a running OpenAI-style or Ollama-style
server (a real Ollama, a vLLM, another llmkit, a hosted API) behind llmkit's
names, in either dialect."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmkit.core.types import EngineInfo
from llmkit.engines.remote import UpstreamTimeout
from llmkit.engines.spec import BuildContext, Built, EngineSpec
from llmkit.errors import ConfigError


class UpstreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upstream: str = Field(
        description="The server to forward to: http://HOST:PORT (dialect detected), "
        "ollama://HOST:PORT or openai://HOST:PORT/v1; alone it selects this engine."
    )
    upstream_api_key: str | None = Field(
        default=None, description="The API key the upstream server wants."
    )
    upstream_timeout: UpstreamTimeout = 120.0


def _build(ctx: BuildContext, o: UpstreamOptions, _fit: Any) -> list[Built]:
    from llmkit.engines.upstream.engine import UpstreamEngine, upstream_models

    names = [ctx.model] if ctx.model else upstream_models(o.upstream, o.upstream_api_key)
    if len(names) > 1 and ctx.served_names:
        raise ConfigError(
            f"{ctx.where}served_model_name names one model, and {o.upstream} serves "
            f"{len(names)}: give model too."
        )
    return [
        Built(
            name,
            UpstreamEngine(
                o.upstream, model=name, api_key=o.upstream_api_key, silence=o.upstream_timeout
            ),
            EngineInfo(engine="upstream", model=name, context_length=0),
        )
        for name in names
    ]


SPEC = EngineSpec(
    name="upstream",
    summary="a running OpenAI- or Ollama-style server: Ollama, vLLM, another llmkit",
    options=UpstreamOptions,
    build=_build,
    implied_by="upstream",
)
