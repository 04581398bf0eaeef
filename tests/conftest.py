"""Shared fixtures: real ``llmkit serve`` processes on loopback, with the bundled model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import openai
import pytest
import uvicorn

from tests.pg import pg_url, postgres  # noqa: F401 - PostgreSQL fixtures, for any test module

# The MCP tests' servers (``mcp``), one per session for every module that uses them.
pytest_plugins = ["tests.mcp_fixtures"]

T = TypeVar("T")

# modelscope retries a failed file listing 4 times, 1 + 2 + 4 s apart, through its own
# documented knob (read when modelscope_hub is first imported, which no test module
# has done yet). The tests that point it at a source that is down need the retry (its
# warnings are what llmkit must keep quiet), not the 7 s of waiting: one retry, 1 s.
# The servers the tests start inherit it.
os.environ.setdefault("MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS", "2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log_path: Path
    home: Path

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def client(self, api_key: str = "unused", **kw: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.v1, api_key=api_key, max_retries=0, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def requests_sent(server: Server) -> list[dict]:
    """Every generation request a server started with ``--log-requests`` received,
    oldest first, as its log shows them."""
    out = []
    for line in server.log().splitlines():
        _, sep, rest = line.partition("llmkit.requests: request: ")
        if sep:
            req = json.loads(rest)
            # Empty tool, thinking and image fields dropped: a message as `llmkit chat`
            # sends it, role and content.
            for m in req.get("messages") or []:
                for key in ("tool_calls", "tool_call_id", "reasoning", "images"):
                    if not m.get(key):
                        m.pop(key, None)
            out.append(req)
    return out


def start_server(
    tmp: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Server:
    """Start ``llmkit serve`` on a free loopback port and wait until /health answers.
    With ``port`` given, the caller says where it listens (``--host H:P``, an env var)."""
    port_args = [] if port else ["--port", str(port := free_port())]
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "server.log"
    full_env = {**os.environ, "LLMKIT_HOME": str(tmp / "home"), **(env or {})}
    cmd = [sys.executable, "-m", "llmkit", "serve", *port_args, *args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = Server(f"http://127.0.0.1:{port}", proc, log_path, tmp / "home")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llmkit serve exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # a refused connection costs nothing: ask often
    proc.kill()
    raise RuntimeError(f"llmkit serve did not become healthy:\n{server.log()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server: the bundled model, also served as 'smol'."""
    s = start_server(
        tmp_path_factory.mktemp("server"),
        "--served-model-name",
        "SmolLM2-135M-Instruct",
        "smol",
        "--parallel",
        "4",
        "--log-requests",  # tests read what the server was sent
    )
    yield s
    s.stop()


@pytest.fixture()
def client(server: Server) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="session")
def vlm(tmp_path_factory: pytest.TempPathFactory):  # -> tests.tiny_vlm.TinyVlm
    """The tiny random SmolVLM (tests/tiny_vlm.py), made and converted once per
    session: ``vlm.lm`` / ``vlm.mmproj`` (GGUFs), ``vlm.hf_dir`` (safetensors)."""
    from tests.tiny_vlm import make

    return make(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="session")
def bundled_path() -> str:
    from llmkit.models.bundled import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="session")
def family_models(bundled_path: str, tmp_path_factory: pytest.TempPathFactory):
    """The bundled weights under other families' templates, each copy made once a
    session for every module that serves one (``tests.family_models``)."""
    from tests.family_models import FamilyModels

    return FamilyModels(bundled_path, tmp_path_factory.mktemp("family-models"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests.tiny_models.make_llama``'s tiny Llama (seed 0), made once a session
    for the conversion and LoRA tests: they only read it."""
    from tests.tiny_models import make_llama

    out = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    make_llama(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_ref(tiny_llama: Path) -> np.ndarray:
    """transformers' next-token log-probabilities of ``tiny_llama`` at each position
    of ``tests.tiny_models.LLAMA_IDS``, in f32: the reference both hold llmkit to."""
    from tests.tiny_models import LLAMA_IDS, reference_logprobs

    return reference_logprobs(tiny_llama, LLAMA_IDS)


def long_chat(max_tokens: int = 6000, **extra: object) -> dict:
    """A streaming chat request that runs for a long time (EOS ignored)."""
    return {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "Count to ten thousand."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
        **extra,
    }


def together(fn: Callable, args: list) -> list:
    """``fn`` on each of ``args`` in threads released at the same moment, so the
    server sees the requests arrive together; the results in ``args``' order."""
    barrier = threading.Barrier(len(args))

    def run(a):
        barrier.wait()
        return fn(a)

    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(run, args))


def until(check: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (returned), or fail after
    ``timeout`` seconds: the way to wait for a server's state, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"gave up waiting{' for ' + what if what else ''}"
        time.sleep(0.05)
    return got


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` on a real uvicorn, on a free loopback port, in a thread of this
    process (for an app a test builds itself); its URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until(lambda: server.started or not thread.is_alive(), 30, "uvicorn to start")
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)
