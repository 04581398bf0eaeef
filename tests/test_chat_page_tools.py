"""Tools on the chat page, in Chromium, against a real ``llmkit serve`` with MCP
servers configured (``tests/mcp_fixtures.py``: servers written with the official
``mcp`` SDK's own framework, which log every call they get): the page picks the
servers a conversation may use, shows the model's call folded (name, arguments,
result), asks before it runs, and the conversation goes on in ``Chat``.

The bundled 135M model is made to call (the page's "first step calls", sent as
``tool_choice: {"name": ...}``); the arguments are its own affair, so the test
reads what reached the MCP server and holds the page to that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from llmkit import Chat
from tests.browser import RESULTS, chromium, watched_page
from tests.mcp_fixtures import Mcp

LONG = 240_000  # ms: a tool loop on a busy two-core CPU


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    with watched_page(browser, 1100, 800) as page:
        yield page


def conversation(name: str) -> str:
    return "/conversations/" + quote(name, safe="")  # a title may hold "?"


def expected_result(call: dict) -> str | None:
    """What the test server's tool returns for these arguments (None: it fails)."""
    args = call["arguments"]
    if call["tool"] == "get_weather":
        return f"WEATHER-REPORT for {args['city']}: sunny, 21 C"
    if call["tool"] == "add":
        return str(args["a"] + args["b"])
    return None  # broken raises, slow outlasts --mcp-timeout


@pytest.mark.timeout(900)  # two model steps, a tool and Chat's turn: minutes on a busy CPU
def test_a_tool_call_is_shown_approved_and_the_conversation_goes_on_in_chat(page: Page, mcp: Mcp):
    url = mcp.server.url
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready]")
    page.click("#open-settings")
    servers = page.locator("#tool-servers label")
    expect(servers).to_have_count(3)  # web, local, down: the operator's --mcp servers
    expect(page.locator("#tool-servers label[data-server='down'] input")).to_be_disabled()
    page.check("#tool-servers label[data-server='local'] input")
    page.select_option("#tools-first", "get_weather")  # the model's first step calls it
    page.fill("#max-tokens", "64")  # room for a whole call
    page.fill("#temperature", "0")
    page.click("text=Save settings")
    expect(page.locator("#status")).to_have_text("Settings saved.")
    expect(page.locator("#settings")).to_be_hidden()
    expect(page.locator("#tools-count")).to_have_text("1 tool server")

    before = len(mcp.calls())
    page.fill("#input", "What is the weather in Paris?")
    page.keyboard.press("Enter")
    box = page.locator(".msg.assistant details.tool").first
    expect(box.locator(".approval")).to_be_visible(timeout=LONG)  # asked before it runs
    expect(page.locator("#status")).to_have_text("Waiting for your approval.")
    assert len(mcp.calls()) == before  # nothing ran yet
    name = page.inner_text("#title")
    assert name == "What is the weather in Paris?"
    call_id = box.get_attribute("data-call")
    shown_name = box.locator(".tname").inner_text()
    shown_args = json.loads(box.locator("pre.args").inner_text())

    page.set_viewport_size({"width": 375, "height": 740})  # a call reads on a phone
    expect(page.locator("#sidebar")).not_to_be_in_viewport()  # the list slid away
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=RESULTS / "chat-page-tool-approval-375.png")
    page.set_viewport_size({"width": 1100, "height": 800})

    with httpx.Client(base_url=url, timeout=30) as c:  # what follows the call: short
        assert c.patch(conversation(name), json={"max_tokens": 8}).status_code == 200
    box.locator("text=Approve").click()
    expect(page.locator("#send")).to_be_visible(timeout=LONG)
    calls = mcp.calls()[before:]
    assert calls and calls[0]["via"] == "stdio"  # the chosen server, and only after the yes
    assert (calls[0]["tool"], calls[0]["arguments"]) == (shown_name, shown_args)
    want = expected_result(calls[0])
    box = page.locator(f"details.tool[data-call='{call_id}']")
    if want is None:
        expect(box).to_have_class(re.compile(r"\bfailed\b"))
    else:
        expect(box).to_have_class(re.compile(r"\bdone\b"))
        expect(box.locator("pre.result")).to_have_text(want)
    for _ in range(3):  # a later step may call again: say no, so the turn ends
        more = page.locator(".approval button", has_text="Deny")
        if not more.count():
            break
        more.first.click()
        expect(page.locator("#send")).to_be_visible(timeout=LONG)
    expect(page.locator(".approval")).to_have_count(0)
    page.screenshot(path=RESULTS / "chat-page-tool.png")

    page.reload()  # as stored: the call folded, its result inside
    page.wait_for_selector("body[data-ready]")
    stored = page.locator(f"details.tool[data-call='{call_id}']")
    expect(stored).not_to_have_attribute("open", "")
    expect(stored.locator(".tname")).to_have_text(shown_name)
    if want is not None:
        expect(stored.locator("pre.result")).to_have_text(want)

    store = f"sqlite:///{mcp.server.home / 'llmkit.db'}"
    chat = Chat(url=url, session=name, store=store, max_tokens=8)
    try:
        assert chat.history[0].content == "What is the weather in Paris?"
        chat.send("Thanks.")  # the page's conversation, tool turns and all, goes on
    finally:
        chat.close()
    with httpx.Client(base_url=url, timeout=30) as c:
        messages = c.get(conversation(name)).json()["messages"]
    assert messages[-2]["content"] == "Thanks." and messages[-1]["role"] == "assistant"
    page.reload()
    page.wait_for_selector("body[data-ready]")
    expect(page.locator(".msg.user .body").last).to_have_text("Thanks.")
    expect(stored).to_be_visible()
