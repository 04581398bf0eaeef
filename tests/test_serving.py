"""How the server behaves as a service: several clients at once, clients that
leave, start-up log, clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import long_chat, start_server

MODEL = "SmolLM2-135M-Instruct"
TOPICS = ["a cat", "the sea", "a robot", "winter"]


def _ask(client, topic: str, stream: bool) -> str:
    kw = dict(
        model=MODEL,
        messages=[{"role": "user", "content": f"Write two sentences about {topic}."}],
        max_tokens=48,
        temperature=0,
    )
    if not stream:
        return client.chat.completions.create(**kw).choices[0].message.content
    chunks = client.chat.completions.create(**kw, stream=True)
    parts, finish = [], None
    for c in chunks:
        parts.append(c.choices[0].delta.content or "")
        finish = c.choices[0].finish_reason or finish
    assert finish in ("stop", "length")  # every stream reached its own end
    return "".join(parts)


def test_four_simultaneous_streams_each_get_their_own_text(client):
    alone = {t: _ask(client, t, stream=False) for t in TOPICS}
    barrier = threading.Barrier(len(TOPICS))

    def run(topic: str) -> str:
        barrier.wait()
        return _ask(client, topic, stream=True)

    with ThreadPoolExecutor(len(TOPICS)) as pool:
        together = dict(zip(TOPICS, pool.map(run, TOPICS), strict=True))
    assert together == alone


def _load(server) -> tuple[int, int]:
    m = httpx.get(server.url + "/health").json()["models"][0]
    return m["running"], m["queued"]


def _wait_idle(server, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _load(server) == (0, 0):
            return True
        time.sleep(0.1)
    return False


def test_disconnect_mid_stream_stops_generation(server):
    body = long_chat()
    with httpx.stream("POST", server.v1 + "/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        assert _load(server)[0] == 1  # it is running while we read
    # 6000 tokens (ignore_eos) would keep it busy for most of a minute: it must stop at once.
    assert _wait_idle(server)


def test_disconnect_while_waiting_non_streaming(server):
    body = long_chat(stream=False)
    try:
        httpx.post(server.v1 + "/chat/completions", json=body, timeout=1.5)
    except httpx.ReadTimeout:
        pass
    assert _wait_idle(server)


def test_startup_log_and_recorded_address(server):
    log = server.log()
    assert "serving SmolLM2-135M-Instruct (also as smol) on llama.cpp" in log
    assert "context 8192 tokens" in log and f"{server.v1}" in log
    recorded = json.loads((server.home / "server.json").read_text())
    assert recorded["url"] == server.url and recorded["models"] == ["SmolLM2-135M-Instruct", "smol"]


def test_sigterm_ends_streams_with_a_final_event(tmp_path):
    s = start_server(tmp_path, "--parallel", "2", "--shutdown-timeout", "0")
    body = long_chat()
    events: list[str] = []
    with httpx.stream("POST", s.v1 + "/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(line[6:])
            if len(events) == 5:
                s.proc.send_signal(signal.SIGTERM)
                break
        for line in lines:
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "length"
    assert len(events) < 3000  # ended by the signal, not by max_tokens
    assert s.proc.wait(timeout=30) == 0
    assert not (s.home / "server.json").exists()
    assert "Traceback" not in s.log()


def test_full_queue_answers_503_with_retry_after(tmp_path):
    s = start_server(tmp_path, "--parallel", "1", "--max-queue", "0")
    long = long_chat()
    try:
        with httpx.stream("POST", s.v1 + "/chat/completions", json=long, timeout=60) as r:
            lines = r.iter_lines()  # keep a reference: a dropped iterator closes the stream
            next(lines)
            assert _load(s) == (1, 0)
            busy = httpx.post(
                s.v1 + "/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
            )
            assert busy.status_code == 503
            assert busy.headers["retry-after"].isdigit()
            assert "busy" in busy.json()["error"]["message"]
        # the long stream was cancelled when we left: the slot serves the next request
        assert _wait_idle(s)
        ok = s.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert ok.choices[0].message.content is not None
    finally:
        s.stop()


def _running(s) -> int:  # type: ignore[no-untyped-def]
    return sum(m["running"] for m in httpx.get(s.url + "/health").json()["models"])


def test_sigterm_lets_generations_finish_then_ends_the_rest_in_each_dialect(tmp_path):
    """With a grace period, a short reply in flight ends on its own; long ones, in
    both dialects and not streaming, end at the grace's end with their last event."""
    # A grace far longer than the short reply needs (12 tokens: ~1 s on a busy
    # machine) and shorter than the long ones (thousands of tokens).
    s = start_server(tmp_path, "--parallel", "4", "--shutdown-timeout", "8")
    long = long_chat()
    out: dict[str, object] = {}

    def openai_stream() -> None:
        with httpx.stream("POST", s.v1 + "/chat/completions", json=long, timeout=90) as r:
            out["openai"] = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]

    def ollama_stream() -> None:
        # Ollama has no ignore_eos: a schema of 3,000 numbers keeps the reply going.
        many = {"type": "array", "items": {"type": "integer"}, "minItems": 3000}
        body = {"model": MODEL, "messages": long["messages"], "format": many,
                "options": {"num_predict": long["max_tokens"], "temperature": 0}}  # fmt: skip
        with httpx.stream("POST", s.url + "/api/chat", json=body, timeout=90) as r:
            out["ollama"] = [json.loads(ln) for ln in r.iter_lines() if ln.strip()]

    def whole() -> None:
        out["whole"] = httpx.post(
            s.v1 + "/chat/completions", json={**long, "stream": False}, timeout=90
        ).json()

    def short() -> None:
        body = {**long, "max_tokens": 12, "stream": False}
        out["short"] = httpx.post(s.v1 + "/chat/completions", json=body, timeout=90).json()

    threads = [threading.Thread(target=f) for f in (openai_stream, ollama_stream, whole)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while _running(s) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    late = threading.Thread(target=short)
    late.start()
    while _running(s) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    s.proc.send_signal(signal.SIGTERM)
    for t in [*threads, late]:
        t.join(timeout=90)
    assert s.proc.wait(timeout=60) == 0
    # The short one finished by itself, within the grace.
    assert out["short"]["usage"]["completion_tokens"] == 12  # type: ignore[index]
    # The long ones were ended at the grace's end, each with its dialect's last event.
    events = out["openai"]
    assert events[-1] == "[DONE]"  # type: ignore[index]
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
    last = out["ollama"][-1]  # type: ignore[index]
    assert last["done"] is True and last["done_reason"] == "length"
    assert last["eval_count"] < long["max_tokens"]
    whole_reply = out["whole"]
    assert whole_reply["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
    assert whole_reply["usage"]["completion_tokens"] < long["max_tokens"]  # type: ignore[index]
    log = s.log()
    assert "letting 4 generation(s) finish" in log and "grace over: ending 3" in log, log
    assert "Traceback" not in log
