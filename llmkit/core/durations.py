"""Ollama's ``keep_alive`` durations, read as Ollama reads them: a model entry in
a config file and an Ollama request both say how long a model stays loaded
this way."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: str | float | int | None) -> float | None:
    """Ollama's ``keep_alive`` in seconds; None means forever (any negative value).

    A number is seconds; a string is a number or a Go duration ("5m", "1h30m",
    "-1m"), as Ollama reads it.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
            body = text.lstrip("+-")
            if not parts or "".join(n + u for n, u in parts) != body:
                raise ValueError(
                    f"keep_alive '{value}' is not a duration: use 5m, 1h, 300 (seconds), 0 or -1"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
            if text.startswith("-"):
                seconds = -seconds
    return None if seconds < 0 else seconds
