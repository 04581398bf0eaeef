"""The MCP servers a server may reach, and the calls made to them.

The operator configures them (``--mcp NAME=URL`` for streamable HTTP, ``--mcp
NAME="command args"`` for stdio, or the config file's ``mcp`` list). A request
names one of them by its NAME; it may name a URL of its own only where the
operator allowed that (``--mcp-allow-urls``), and never a command: a stdio
server is started from the operator's config alone.

Each listing and each call opens its own session (a stdio server is started
for it and stopped after), so nothing is shared between requests and a server
that died is simply started again. Tool listings are cached for a while
(``TOOLS_TTL``) and listed again on demand (``refresh``). Every call is bounded
in time (``timeout``) and in the size of its result, logged with its server,
tool, duration and outcome, and counted (``on_call``: the metrics). A result is
text handed to the model as a tool's output, never read as an instruction.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import anyio

if TYPE_CHECKING:
    from mcp import Client

from llmkit.errors import ConfigError, InvalidRequestError

log = logging.getLogger("llmkit.mcp")
TOOLS_TTL = 60.0  # seconds a tool listing is reused before it is asked again
# Seconds to reach a server (start a stdio one, open a session): apart from the call's
# own ``timeout``, as a stdio server's start costs what its interpreter's start costs.
CONNECT_TIMEOUT = 30.0
MAX_HEADERS = 32  # a request's ``headers`` for one server
MAX_HEADER_SIZE = 8192  # characters, names and values together

Outcome = Literal["ok", "error", "timeout", "unreachable"]
OnCall = Callable[[str, str, float, Outcome], None]  # server, tool, seconds, outcome


@dataclass(frozen=True)
class ServerSpec:
    """One MCP server: a streamable-HTTP ``url`` or a stdio ``command`` (argv)."""

    name: str
    url: str | None = None
    command: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def transport(self) -> Literal["http", "stdio"]:
        return "http" if self.url else "stdio"


def parse_spec(text: str) -> ServerSpec:
    """``NAME=http(s)://...`` or ``NAME=command args`` (split as a shell would)."""
    name, sep, target = text.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or not target:
        raise ConfigError(
            f"--mcp {text!r}: give NAME=URL (streamable HTTP) or NAME='command args' (stdio)."
        )
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--mcp {text!r}: NAME takes letters, digits, '-' and '_' only.")
    if target.startswith(("http://", "https://")):
        return ServerSpec(name, url=target)
    try:
        argv = tuple(shlex.split(target))
    except ValueError as e:
        raise ConfigError(f"--mcp {text!r}: the command does not parse ({e}).") from None
    return ServerSpec(name, command=argv)


@dataclass(frozen=True)
class RemoteTool:
    """A tool as its server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None = None


@dataclass
class Listing:
    tools: list[RemoteTool]
    error: str | None
    at: float


@dataclass(frozen=True)
class CallResult:
    output: str  # the tool's text (or why the call failed, with ``error``)
    error: bool = False
    # With ``error``: the tool itself failed (False), or the call never got an answer
    # from it (True: the server down, too slow, or the call refused before it ran).
    protocol: bool = False


def check_headers(headers: Any, param: str) -> tuple[tuple[str, str], ...]:
    """A request's ``headers`` for a server: string to string, bounded."""
    if headers is None:
        return ()
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidRequestError(f"{param} must map header names to strings.", param=param)
    if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers.items()) > (
        MAX_HEADER_SIZE
    ):
        raise InvalidRequestError(
            f"{param}: at most {MAX_HEADERS} headers of {MAX_HEADER_SIZE} characters in all.",
            param=param,
        )
    return tuple(headers.items())


@dataclass
class McpServers:
    """The configured servers (``app.state.mcp``) and how calls to any server go."""

    specs: dict[str, ServerSpec] = field(default_factory=dict)
    allow_urls: bool = False
    approval: Literal["always", "never"] = "always"
    timeout: float = 30.0
    max_result: int = 20000  # characters of a result handed to the model
    on_call: OnCall | None = None
    _listings: dict[ServerSpec, Listing] = field(default_factory=dict)

    @classmethod
    def from_specs(cls, texts: list[str], **kw: Any) -> McpServers:
        specs: dict[str, ServerSpec] = {}
        for text in texts:
            spec = parse_spec(text)
            if spec.name in specs:
                raise ConfigError(f"--mcp: two servers are named {spec.name!r}.")
            specs[spec.name] = spec
        return cls(specs, **kw)

    def configured(self, name: str, param: str) -> ServerSpec:
        """The configured server ``name``, or a 400 naming those there are."""
        spec = self.specs.get(name)
        if spec is None:
            have = ", ".join(sorted(self.specs)) or "none (llmkit serve --mcp NAME=URL)"
            raise InvalidRequestError(
                f"{param}: no MCP server is configured as {name!r}; configured: {have}.",
                param=param,
            )
        return spec

    def for_url(
        self, label: str, url: str, headers: tuple[tuple[str, str], ...], param: str
    ) -> ServerSpec:
        """A server a request names by URL: only where the operator allows it."""
        if not self.allow_urls:
            raise InvalidRequestError(
                f"{param}: this server reaches only its configured MCP servers "
                f"({', '.join(sorted(self.specs)) or 'none'}); name one as server_label, "
                "or start it with --mcp-allow-urls to allow any URL.",
                param=param,
            )
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidRequestError(f"{param} must be an http(s) URL.", param=param)
        return ServerSpec(label, url=url, headers=headers)

    # -- talking to a server ----------------------------------------------------------

    def _client(self, spec: ServerSpec, extra: tuple[tuple[str, str], ...] = ()) -> Client:
        # The SDK (a third of a second to import) loads with the first server reached,
        # not with every server that never reaches one.
        import httpx2
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        if spec.url is not None:
            headers = dict(spec.headers) | dict(extra)
            timeout = httpx2.Timeout(self.timeout)
            http = create_mcp_http_client(headers=headers or None, timeout=timeout)
            return Client(streamable_http_client(spec.url, http_client=http), mode="legacy")
        params = StdioServerParameters(command=spec.command[0], args=list(spec.command[1:]))
        return Client(params, mode="legacy")

    async def list_tools(
        self, spec: ServerSpec, *, refresh: bool = False, headers: tuple = ()
    ) -> Listing:
        """The server's tools (cached for ``TOOLS_TTL``); ``error`` says why none."""
        key = spec if not headers else ServerSpec(spec.name, spec.url, spec.command, headers)
        cached = self._listings.get(key)
        if cached is not None and not refresh and time.monotonic() - cached.at < TOOLS_TTL:
            return cached
        try:
            with anyio.fail_after(CONNECT_TIMEOUT + self.timeout):
                async with self._client(spec, headers) as client:
                    tools, cursor = [], None
                    for _ in range(100):  # a paginator that never ends can't hang us
                        page = await client.list_tools(cursor=cursor)
                        tools += page.tools
                        cursor = page.next_cursor
                        if not cursor:
                            break
            listing = Listing([_remote(t) for t in tools], None, time.monotonic())
        except Exception as e:  # a server down or broken: said, not raised
            log.warning("mcp list server=%s failed: %s", spec.name, _why(e))
            listing = Listing([], f"could not list the tools of {spec.name!r}: {_why(e)}", 0.0)
        self._listings[key] = listing
        return listing

    async def call(
        self, spec: ServerSpec, tool: str, arguments: dict[str, Any], headers: tuple = ()
    ) -> CallResult:
        """Run ``tool``; whatever goes wrong is the result (``error``), never raised."""
        started = time.perf_counter()
        try:
            with anyio.fail_after(CONNECT_TIMEOUT + self.timeout):
                async with self._client(spec, headers) as client:
                    with anyio.fail_after(self.timeout):
                        result = await client.call_tool(tool, arguments)
            text = _text_of(result)
            if result.is_error:
                outcome: Outcome = "error"
                out = CallResult(self.bounded(text or "the tool failed"), error=True)
            else:
                outcome, out = "ok", CallResult(self.bounded(text))
        except Exception as e:  # the task groups may wrap it: look inside
            if isinstance(_root(e), TimeoutError):
                outcome = "timeout"
                why = f"the MCP server {spec.name!r} did not answer in {self.timeout:g}s"
            else:
                outcome = "unreachable"
                why = f"the MCP server {spec.name!r} failed: {_why(e)}"
            out = CallResult(why, error=True, protocol=True)
        seconds = time.perf_counter() - started
        log.info("mcp call server=%s tool=%s %.3fs %s", spec.name, tool, seconds, outcome)
        if self.on_call is not None:
            self.on_call(spec.name, tool, seconds, outcome)
        return out

    def bounded(self, text: str) -> str:
        if len(text) <= self.max_result:
            return text
        cut = len(text) - self.max_result
        return text[: self.max_result] + f"\n[... {cut} more characters cut]"


def _remote(t: Any) -> RemoteTool:
    schema = t.input_schema if isinstance(t.input_schema, dict) else {"type": "object"}
    ann = t.annotations.model_dump(exclude_none=True) if t.annotations is not None else None
    return RemoteTool(t.name, t.description or "", schema, ann or None)


def _text_of(result: Any) -> str:
    """A call's content as the text the model reads: text parts as they are, the
    structured result as JSON when there is no text, other parts named."""
    parts = []
    for c in result.content or ():
        if getattr(c, "type", None) == "text":
            parts.append(c.text)
        else:
            parts.append(f"[{getattr(c, 'type', 'content')} content]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _root(e: BaseException) -> BaseException:
    """The first exception inside the task groups' exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def _why(e: BaseException) -> str:
    """One line for an exception."""
    e = _root(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
