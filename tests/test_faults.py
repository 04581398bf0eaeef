"""Faults of what llmkit forwards to, on loopback: an upstream that accepts a
request and then falls silent, and one that dies mid-reply. Each affected
request ends within the configured time with an error in the caller's dialect
(504 / 502, or the stream's last event), and the server keeps serving. And the
other side's fault: a client that leaves before its whole answer is ready has
its generation cancelled at once, in every dialect.

The stand-in upstream is a raw socket server: it answers the OpenAI listing,
then misbehaves exactly as told, which no well-behaved framework would."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.test_metrics import samples

MODEL_CARD = {"id": "m", "object": "model", "max_model_len": 512}
LISTING = json.dumps({"object": "list", "data": [MODEL_CARD]})
DELTA = {"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}
CHUNK = json.dumps(
    {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [DELTA]}
)


class RawUpstream:
    """A raw socket server on loopback: each connection's request head is read,
    then ``answer`` does what the subclass is there to do."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.answer(conn, head)

    def answer(self, conn: socket.socket, head: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def send_json(conn: socket.socket, body: bytes) -> None:
        """``body`` as a whole JSON answer (an empty one: 404)."""
        status = b"200 OK" if body else b"404 Not Found"
        head = b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        conn.sendall(b"HTTP/1.1 " + status + b"\r\n" + head + b"Connection: close\r\n\r\n" + body)


class Misbehaving(RawUpstream):
    """Answers ``GET /v1/models``; a chat request gets headers and one chunk, then
    ``mode``: "hang" (silence until released) or "die" (the connection closes)."""

    def __init__(self) -> None:
        self.mode = "hang"
        self.release = threading.Event()
        super().__init__()

    def answer(self, conn: socket.socket, head: bytes) -> None:
        if head.startswith(b"GET /v1/models"):
            self.send_json(conn, LISTING.encode())
            return
        head = b"Content-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + head + f"data: {CHUNK}\n\n".encode())
        if self.mode == "hang":
            self.release.wait(120)
        # "die": the connection closes here, mid-reply, with no [DONE]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Misbehaving]:
    u = Misbehaving()
    yield u
    u.release.set()
    u.sock.close()


@pytest.fixture(scope="module")
def proxy(upstream: Misbehaving, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(
        tmp_path_factory.mktemp("faults"),
        "--upstream", f"openai://127.0.0.1:{upstream.port}/v1", "--model", "m",
        "--upstream-timeout", "2",
    )  # fmt: skip
    yield s
    s.stop()


HI = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def sse_events(proxy: Server, body: dict) -> list[dict | str]:
    with httpx.stream("POST", proxy.v1 + "/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        return [
            ln[6:] if ln == "data: [DONE]" else json.loads(ln[6:])
            for ln in r.iter_lines()
            if ln.startswith("data: ")
        ]


def test_a_silent_upstream_ends_the_request_with_504_in_time(upstream, proxy):
    upstream.mode = "hang"
    started = time.monotonic()
    r = httpx.post(proxy.v1 + "/chat/completions", json=HI, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert "stopped answering" in r.json()["error"]["message"]
    r = httpx.post(proxy.url + "/api/chat", json={**HI, "stream": False}, timeout=30)
    assert r.status_code == 504 and "stopped answering" in r.json()["error"]
    assert time.monotonic() - started < 25  # two requests, each cut at ~2 s, not 600
    # Streaming: what arrived is delivered, then the stream's last event is the error.
    events = sse_events(proxy, {**HI, "stream": True})
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2])  # type: ignore[index]
    assert text == "Hel"
    assert events[-2]["error"]["code"] == "upstream_timeout"  # type: ignore[index]
    assert events[-1] == "[DONE]"


def test_an_upstream_dying_mid_reply_is_a_502_and_the_server_goes_on(upstream, proxy):
    upstream.mode = "die"
    r = httpx.post(proxy.v1 + "/chat/completions", json=HI, timeout=30)
    assert r.status_code == 502
    message = r.json()["error"]["message"]  # how the cut shows depends on when it comes
    assert "ended the reply before its end" in message or "broke mid-reply" in message
    reply = httpx.post(proxy.url + "/api/chat", json=HI, timeout=30)
    lines = [json.loads(x) for x in reply.text.splitlines()]
    assert lines[-1].get("error"), lines  # the stream's last line says what went wrong
    assert lines[0]["message"]["content"] == "Hel"
    assert "ended the reply" in lines[-1]["error"] or "broke mid-reply" in lines[-1]["error"]
    health = httpx.get(proxy.url + "/health").json()
    assert health["status"] == "ok"  # nothing stuck: the proxy itself is fine
    assert "Traceback" not in proxy.log()


# -- a client that leaves before its whole answer is ready ---------------------------


class Holding(RawUpstream):
    """Answers ``GET /v1/models``; a generation gets headers and one chunk, then the
    connection is held open until llmkit closes it (``closed``): the sign that the
    engine's work was cancelled. Anything else (``/tokenize``) is a 404."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.closed = threading.Event()
        super().__init__()

    def answer(self, conn: socket.socket, head: bytes) -> None:
        if head.startswith(b"GET /v1/models"):
            self.send_json(conn, LISTING.encode())
        elif not head.startswith((b"POST /v1/chat/completions", b"POST /v1/completions")):
            self.send_json(conn, b"")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
            conn.sendall(f"data: {CHUNK}\n\n".encode())
            self.opened.set()
            conn.settimeout(120)
            with contextlib.suppress(OSError):
                while conn.recv(65536):  # the rest of the request, then its end
                    pass
            self.closed.set()


@pytest.fixture(scope="module")
def holding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Holding, Server]]:
    """The holding upstream, and a server in front of it that would wait for it for
    two minutes: only the client's leaving can end a request sooner."""
    up = Holding()
    s = start_server(
        tmp_path_factory.mktemp("holding"),
        "--upstream", f"openai://127.0.0.1:{up.port}/v1", "--model", "m",
        "--upstream-timeout", "120",
    )  # fmt: skip
    yield up, s
    s.stop()
    up.sock.close()


ASK = [{"role": "user", "content": "hi"}]
WHOLE = {  # one non-streamed request in each dialect that answers in one piece
    "/v1/chat/completions": {"model": "m", "messages": ASK},
    "/v1/completions": {"model": "m", "prompt": "hi"},
    "/v1/messages": {"model": "m", "max_tokens": 16, "messages": ASK},
    "/v1/responses": {"model": "m", "input": "hi", "store": False},
    "/api/chat": {"model": "m", "messages": ASK, "stream": False},
    "/api/generate": {"model": "m", "prompt": "hi", "stream": False},
}


def _counted(server: Server, route: str, status: str) -> float:
    """How many ``POST route`` requests were answered ``status``, as /metrics counts them."""
    key = (("method", "POST"), ("route", route), ("status", status))
    return samples(httpx.get(server.url + "/metrics").text).get(("llmkit_requests_total", key), 0)


@pytest.mark.parametrize("route", list(WHOLE))
def test_a_client_leaving_a_whole_answer_cancels_its_generation(holding, route):
    up, server = holding
    up.opened.clear()
    up.closed.clear()
    before = _counted(server, route, "499")
    body = json.dumps(WHOLE[route]).encode()
    port = server.url.rsplit(":", 1)[1]
    request = (
        f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(port))) as client:
        client.sendall(request + body)
        assert up.opened.wait(30)  # the engine is at work on it
    # The client is gone: its generation must end now, not at the 120 s timeout.
    assert up.closed.wait(15)
    deadline = time.monotonic() + 15
    while _counted(server, route, "499") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _counted(server, route, "499") == before + 1  # answered 499, once, in the log
    assert "Traceback" not in server.log()
