"""Keep the hub libraries' own chatter off the user's terminal during ``pull``
and ``mem``: modelscope logs "Download failed ..., retrying" lines and
huggingface_hub logs and warns as it retries. llmkit turns their failures into
one ``SourceError`` per source and says it once, in its own words
(``hubs._Translate``); the libraries' lines would only repeat it, half-formed.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: The loggers the hub clients (and the HTTP stacks under them) write to.
LIBRARY_LOGGERS = (
    "modelscope_hub",
    "modelscope",
    "huggingface_hub",
    "urllib3",
    "requests",
    "httpx",
    "httpx2",
    "filelock",
)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the hub libraries' log records and Python warnings for the block."""
    with contextlib.suppress(ImportError):
        # modelscope_hub configures its logger on first use, to its own level;
        # configure it now so the level set below is not undone later.
        from modelscope_hub.utils.logger import get_logger

        get_logger()
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)
