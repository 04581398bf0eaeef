"""The server's logging, set up once by ``llmkit serve`` before anything loads: the
level, one format, and the request id (``api/request_id``) on every line written
while a request runs, so a user's report and the server log meet."""

from __future__ import annotations

import logging

from llmkit.api.request_id import RequestIdFilter

LOG_FORMAT = "%(levelname)-7s %(rid)s%(name)s: %(message)s"


def install(level: str) -> None:
    """The server's logging: the level, and the request id on every line."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    # httpx logs every request at INFO: one line per call to an upstream or a vLLM.
    logging.getLogger("httpx").setLevel(logging.WARNING)
