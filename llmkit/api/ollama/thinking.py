"""Ollama's ``think``, read into core's switch.

``true`` / ``false`` switch thinking on and off; a level (``"low"``,
``"medium"``, ``"high"``, gpt-oss's) switches it on at that effort. Anything
else is refused with Ollama's own words, which its clients match on
(``invalid think value``), and a model that cannot think answers ``true`` or
a level with Ollama's ``"MODEL" does not support thinking`` (``api.generation``)
while ``false`` is accepted everywhere.
"""

from __future__ import annotations

from llmkit.core.types import Effort
from llmkit.errors import InvalidRequestError

LEVELS: tuple[Effort, ...] = ("high", "medium", "low")  # in the order Ollama names them


def read_think(value: bool | str | None) -> tuple[bool | None, Effort | None]:
    """``(think, effort)`` for a request's ``think``."""
    if value is None or isinstance(value, bool):
        return value, None
    if value in LEVELS:
        return True, value  # type: ignore[return-value]
    raise InvalidRequestError(
        f'invalid think value: "{value}" (must be "high", "medium", "low", true, or false)',
        param="think",
    )
