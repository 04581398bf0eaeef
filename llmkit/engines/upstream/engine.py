"""The upstream engine: a running OpenAI-style or Ollama-style server as the
backend of served models, in whichever dialect it speaks (``RemoteEngine``), and
the listing of what it serves when no model is named."""

from __future__ import annotations

from llmkit.client.http import Client
from llmkit.client.protocol import parse_url
from llmkit.engines.remote import RemoteEngine
from llmkit.errors import ConfigError, LlmkitError, UnreachableError


class UpstreamEngine(RemoteEngine):
    """A ``RemoteEngine`` named by ``--upstream URL``."""


def upstream_models(upstream: str, api_key: str | None) -> list[str]:
    """Every model the upstream lists now (serving them all needs it up at start)."""
    url, dialect = parse_url(upstream, option="--upstream")
    try:
        with Client(url, api_key=api_key, dialect=dialect, timeout=5.0) as client:
            names = client.models()
    except UnreachableError as e:
        raise ConfigError(
            f"Cannot list the models of {url} ({type(e.__cause__).__name__}): is it running? "
            "Or name the model with --model."
        ) from None
    except LlmkitError:
        names = []
    if not names:
        raise ConfigError(f"{url} lists no models; name the model with --model.")
    return names
