"""A request id on every response (``X-Request-Id``) and on every log line written
while the request runs, so a user's report and the server log meet.

A client's own ``X-Request-Id`` is kept (a proxy's, a tracing system's) when it
is short and printable; otherwise the server makes one. The id lives in a
context variable, which ``RequestIdFilter`` puts on log records (the server's
logging set-up, ``serving/logs``, installs it). Every response also says which
llmkit answered (``X-Llmkit-Version``): ``/api/version`` answers the Ollama API
level, which Ollama's clients gate features on.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any

from llmkit.version import __version__

_VERSION = (b"x-llmkit-version", __version__.encode())

current: contextvars.ContextVar[str] = contextvars.ContextVar("llmkit_request_id", default="-")
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestId:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _ACCEPTABLE.fullmatch(given) else uuid.uuid4().hex
        token = current.set(rid)

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", rid.encode()),
                    _VERSION,
                ]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            current.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record, and ``rid``: "[ID] " inside a request,
    "" outside one, for log formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = current.get()
        record.request_id = rid
        record.rid = "" if rid == "-" else f"[{rid}] "
        return True
