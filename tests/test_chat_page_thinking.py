"""A reasoning model's thinking in the conversations API and on the chat page: a real
``llmkit serve`` whose upstream is a stand-in reasoning server (OpenAI
``reasoning_content`` / Ollama ``thinking`` over a real socket,
``tests/thinking_upstream.py``), driven with httpx and with Debian's chromium.

The stand-in holds each reply between its thinking and its answer until the test
lets it go, so what the page shows while the model thinks is checked live."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import RESULTS, chromium, watched_page
from tests.conftest import Server, serving, start_server, until
from tests.thinking_upstream import ANSWER, MODEL, THINKING, Thinker

THOUGHT = "".join(THINKING)
SAID = "".join(ANSWER)
WAIT = 30_000  # ms


@pytest.fixture(scope="module", params=["openai", "ollama"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Thinker, Server]]:
    """The stand-in, and a server that forwards to it in the dialect ``param``."""
    t = Thinker()
    with serving(t.app) as url:
        host = url.removeprefix("http://")
        upstream = f"openai://{host}/v1" if request.param == "openai" else f"ollama://{host}"
        s = start_server(
            tmp_path_factory.mktemp("thinking-page"), "--upstream", upstream, "--model", MODEL
        )
        try:
            yield t, s
        finally:
            if t.gate is not None:
                t.gate.set()
            s.stop()


@pytest.fixture()
def thinker(setup: tuple[Thinker, Server]) -> Iterator[tuple[Thinker, Server]]:
    t, s = setup
    t.gate, t.requests[:] = None, []
    t.thought.clear()
    yield t, s
    if t.gate is not None:
        t.gate.set()  # never leave a reply waiting


def events(server: Server, name: str, text: str) -> list[tuple[str, dict]]:
    out, kind = [], "message"
    body = {"content": text}
    with httpx.stream(
        "POST", f"{server.url}/conversations/{name}/messages", json=body, timeout=60
    ) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                out.append((kind, json.loads(line[5:])))
    return out


def test_the_api_streams_thinking_apart_and_stores_the_answer(thinker):
    _, server = thinker
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/conversations", json={"name": "api"}).status_code == 201
    got = events(server, "api", "Hi")
    kinds = [k for k, _ in got]
    assert kinds[0] == "user" and kinds[-1] == "done"
    assert "".join(d["text"] for k, d in got if k == "reasoning") == THOUGHT
    assert "".join(d["text"] for k, d in got if k == "delta") == SAID
    assert max(i for i, k in enumerate(kinds) if k == "reasoning") < kinds.index("delta")
    done = got[-1][1]
    assert done["message"]["content"] == SAID and done["message"]["reasoning"] == THOUGHT
    # OpenAI-style servers count the thinking apart (Ollama does not)
    counted = len(THINKING) if thinker[0].requests[-1].get("stream_options") else 0
    assert done["usage"]["reasoning_tokens"] == counted
    with httpx.Client(base_url=server.url, timeout=60) as c:
        stored = c.get("/conversations/api").json()["messages"]
        assert [(m["role"], m["content"], m["reasoning"]) for m in stored] == [
            ("user", "Hi", None),
            ("assistant", SAID, THOUGHT),
        ]
        # The next turn sends the history by its answers alone.
        events(server, "api", "And?")
        assert c.get("/conversations/api").json()["turns"] == 2
    sent = thinker[0].requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": SAID}


def test_a_reply_cut_while_thinking_is_stored_with_its_thinking(thinker):
    t, server = thinker
    t.gate = threading.Event()
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/conversations", json={"name": "cut"}).status_code == 201
    thought = ""
    with httpx.stream(
        "POST", f"{server.url}/conversations/cut/messages", json={"content": "Hi"}, timeout=60
    ) as r:
        kind = ""
        for line in r.iter_lines():  # read the thinking, then hang up before the answer
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "reasoning":
                thought += json.loads(line[5:])["text"]
                if thought == THOUGHT:
                    break
    assert t.thought.wait(30)

    def stored() -> dict | None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            conv = c.get("/conversations/cut").json()
        return None if conv["busy"] or len(conv["messages"]) < 2 else conv["messages"][-1]

    last = until(stored, 30, "the cut reply stored")
    assert (last["content"], last["reasoning"], last["interrupted"]) == ("", THOUGHT, True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    with watched_page(browser, 1200, 800) as page:
        yield page


def test_the_page_shows_thinking_live_in_a_folded_block_and_after_a_reload(page, thinker):
    t, server = thinker
    t.gate = threading.Event()
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready]")
    page.fill("#input", "Hi")
    page.keyboard.press("Enter")
    assert t.thought.wait(30)  # all the thinking is out; the answer is held back
    block = page.locator(".msg.assistant details.thinking")
    answer = page.locator(".msg.assistant .body")
    # While the model thinks: the block is open and shows the thinking, no answer yet.
    expect(block.locator(".thought")).to_have_text(THOUGHT, timeout=WAIT)
    expect(block).to_have_attribute("open", "")
    expect(block.locator("summary")).to_have_text("Thinking…")
    expect(answer).to_be_empty()
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=RESULTS / "chat-page-thinking.png")

    t.gate.set()  # the answer comes: the block folds, the answer is outside it
    expect(answer).to_have_text(SAID, timeout=WAIT)
    expect(page.locator(".msg.assistant .usage")).to_be_visible(timeout=WAIT)
    if t.requests[-1].get("stream_options"):  # an OpenAI-style upstream counts thinking
        expect(page.locator(".msg.assistant .usage")).to_contain_text(f"({len(THINKING)} thinking)")
    expect(block).not_to_have_attribute("open", "")
    expect(block.locator("summary")).to_have_text("Thought")
    expect(block.locator(".thought")).to_have_text(THOUGHT)
    assert THOUGHT not in answer.inner_text()
    name = page.inner_text("#title")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        stored = c.get(f"/conversations/{name}").json()["messages"]
    assert (stored[1]["content"], stored[1]["reasoning"]) == (SAID, THOUGHT)

    page.reload()  # from the stored turn: folded, thinking inside, answer outside
    page.wait_for_selector("body[data-ready]")
    expect(answer).to_have_text(SAID)
    expect(block).to_have_count(1)
    expect(block).not_to_have_attribute("open", "")
    block.locator("summary").click()
    expect(block).to_have_attribute("open", "")
    expect(block.locator(".thought")).to_have_text(THOUGHT)
