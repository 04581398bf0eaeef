"""The chat page in a real browser (Debian's chromium, driven by Playwright) against
a real ``llmkit serve`` with the bundled model and its SQLite store."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from llmkit import Chat
from tests.browser import RESULTS, chromium, watched_page
from tests.conftest import Server, start_server

LONG = 60_000  # ms: replies on a busy CPU take a while
HOSTILE = (
    "Here: <script>window.__pwned = 'script'</script> and "
    '<img src="x" onerror="window.__pwned = \'img\'"> and '
    "[a link](javascript:window.__pwned='link') end.\n\n"
    "$$\\frac{a}{b}$$\n\n```python\ndef f():\n    return 1\n```"
)
LONG_CODE = "```python\nresult = " + " + ".join(f"value_{i}" for i in range(40)) + "\n```"


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(
        tmp_path_factory.mktemp("page"), "--served-model-name", "SmolLM2-135M-Instruct", "smol"
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    with watched_page(browser, 1200, 800) as page:
        yield page


def api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120)


def imported(server: Server, name: str, *turns: tuple[str, str], **extra: object) -> None:
    doc = {"name": name, "messages": [{"role": r, "content": c} for r, c in turns], **extra}
    with api(server) as c:
        r = c.post("/conversations/import", json=doc)
        assert r.status_code == 201, r.text


def load(page: Page, server: Server, name: str | None = None) -> None:
    page.goto(server.url + "/" + (f"#c={name}" if name else ""))
    page.wait_for_selector("body[data-ready]")


def messages(server: Server, name: str) -> list[dict]:
    with api(server) as c:
        return c.get(f"/conversations/{name}").json()["messages"]


def test_a_reply_streams_in_and_the_conversation_is_there_after_a_reload(page, page_server):
    load(page, page_server)
    # every piece of the reply that reaches the page, as the length of what is shown
    page.evaluate("""() => {
        window.__lengths = [];
        new MutationObserver(() => {
            const b = document.querySelector('.msg.assistant .body');
            if (b) window.__lengths.push(b.textContent.length);
        }).observe(document.getElementById('messages'),
                   {subtree: true, childList: true, characterData: true});
    }""")
    page.click("#open-settings")  # a short reply: this conversation's own settings
    page.fill("#max-tokens", "40")
    page.fill("#temperature", "0")
    page.click("text=Save settings")
    expect(page.locator("#status")).to_have_text("Settings saved.")
    page.focus("#input")
    page.keyboard.type("Hello")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    assert page.input_value("#input") == "Hello\n"
    page.keyboard.type("Tell me about the moon.")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant .usage")).to_contain_text("tokens/s", timeout=LONG)
    lengths = page.evaluate("window.__lengths")
    assert len(set(lengths)) >= 3, lengths  # it grew piece by piece, not all at once
    name = page.inner_text("#title")
    assert name == "Hello"  # titled by the first line of the first message
    with api(page_server) as c:
        conv = c.get(f"/conversations/{name}").json()
    assert (conv["max_tokens"], conv["temperature"]) == (40, 0)
    stored = conv["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[0]["content"] == "Hello\nTell me about the moon."
    shown = page.inner_text(".msg.assistant .body")
    assert stored[1]["content"].split()[:3] == shown.split()[:3]
    usage = page.inner_text(".msg.assistant .usage")
    assert "prompt" in usage and "reply tokens" in usage

    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=RESULTS / "chat-page-desktop.png")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#conversations li", has_text=name)).to_be_visible()
    expect(page.locator(".msg.user .body")).to_have_text("Hello\nTell me about the moon.")


def test_switch_rename_search_and_delete(page, page_server):
    imported(page_server, "apples", ("user", "Tell me about apples."), ("assistant", "Crisp."))
    imported(page_server, "pears", ("user", "And pears?"), ("assistant", "Juicy quinces."))
    load(page, page_server)
    page.click("#conversations li[data-name='apples'] .open")
    expect(page.locator(".msg.assistant .body")).to_have_text("Crisp.")
    page.click("#conversations li[data-name='pears'] .open")
    expect(page.locator(".msg.assistant .body")).to_have_text("Juicy quinces.")
    expect(page.locator("#title")).to_have_text("pears")

    page.click("#conversations li[data-name='pears'] [aria-label='Rename pears']")
    page.fill("#conversations input", "quince talk")
    page.keyboard.press("Enter")
    expect(page.locator("#conversations li[data-name='quince talk']")).to_be_visible()
    expect(page.locator("#title")).to_have_text("quince talk")
    with api(page_server) as c:
        assert c.get("/conversations/pears").status_code == 404
        assert c.get("/conversations/quince%20talk").json()["turns"] == 1

    page.fill("#search", "quinces")  # found by what a message says
    expect(page.locator("#conversations li")).to_have_count(1)
    expect(page.locator("#conversations li")).to_have_attribute("data-name", "quince talk")
    page.fill("#search", "APPLES")
    expect(page.locator("#conversations li")).to_have_count(1)
    expect(page.locator("#conversations li")).to_have_attribute("data-name", "apples")

    page.fill("#search", "")
    page.once("dialog", lambda d: d.accept())
    page.click("#conversations li[data-name='apples'] [aria-label='Delete apples']")
    expect(page.locator("#conversations li[data-name='apples']")).to_have_count(0)
    with api(page_server) as c:
        assert c.get("/conversations/apples").status_code == 404


def test_the_model_picker_lists_the_served_models_and_sets_the_conversations(page, page_server):
    imported(page_server, "picker", ("user", "Hi"), ("assistant", "Hello."))
    load(page, page_server, "picker")
    options = page.locator("#model-menu [role=option] .name")
    expect(options).to_have_text(["SmolLM2-135M-Instruct", "smol"])
    page.click("#model")
    page.click("#model-menu [data-model='smol']")
    with api(page_server) as c:
        for _ in range(100):  # the page saves the choice as it is made
            if c.get("/conversations/picker").json()["model"] == "smol":
                break
            page.wait_for_timeout(100)
        assert c.get("/conversations/picker").json()["model"] == "smol"
    page.reload()
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#model .model-name")).to_have_text("smol")


def test_stop_keeps_the_reply_as_interrupted_and_continue_goes_on(page, page_server):
    imported(page_server, "story", max_tokens=None)
    with api(page_server) as c:
        c.patch("/conversations/story", json={"max_tokens": 400, "temperature": 0})
    load(page, page_server, "story")
    page.fill("#input", "Write a long story about a dragon who learns to cook.")
    page.keyboard.press("Enter")
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator(".msg.assistant .body")).not_to_be_empty(timeout=LONG)
    page.keyboard.press("Escape")
    expect(page.locator(".msg.assistant .badge")).to_have_text("interrupted", timeout=LONG)
    expect(page.locator("#send")).to_be_visible()
    cut = messages(page_server, "story")[-1]
    assert cut["role"] == "assistant" and cut["interrupted"] and cut["content"]

    page.reload()
    page.wait_for_selector("body[data-ready]")
    expect(page.locator(".msg.assistant .badge")).to_have_text("interrupted")
    with api(page_server) as c:  # a short continuation, so the test does not wait long
        c.patch("/conversations/story", json={"max_tokens": 8})
    page.click("text=Continue")
    expect(page.locator(".msg.assistant .usage")).to_be_visible(timeout=LONG)
    after = messages(page_server, "story")
    assert len(after) == 2 and not after[-1]["interrupted"]
    assert after[-1]["content"].startswith(cut["content"])
    assert len(after[-1]["content"]) > len(cut["content"])


def test_edit_and_resend_drops_what_followed(page, page_server):
    imported(
        page_server,
        "edits",
        ("user", "Hello"),
        ("assistant", "Hi there."),
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        max_tokens=None,
    )
    with api(page_server) as c:
        c.patch("/conversations/edits", json={"max_tokens": 12, "temperature": 0})
    load(page, page_server, "edits")
    expect(page.locator(".msg")).to_have_count(4)
    page.locator(".msg.user").first.locator("text=Edit").click()
    page.fill(".msg.user textarea", "Say OK.")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant .usage")).to_be_visible(timeout=LONG)
    expect(page.locator(".msg")).to_have_count(2)
    stored = messages(page_server, "edits")
    assert (stored[0]["role"], stored[0]["content"]) == ("user", "Say OK.")
    assert len(stored) == 2 and stored[1]["role"] == "assistant"


def test_model_output_is_shown_as_text_and_runs_nothing(page, page_server):
    imported(page_server, "hostile", ("user", "Repeat it."), ("assistant", HOSTILE))
    load(page, page_server, "hostile")
    body = page.locator(".msg.assistant .body")
    expect(body).to_contain_text("<script>window.__pwned = 'script'</script>")
    expect(body).to_contain_text('<img src="x"')
    assert page.evaluate("window.__pwned") is None
    assert body.locator("script, img, iframe, [onerror]").count() == 0
    assert body.locator("a[href^='javascript']").count() == 0
    page.click("text=a link")  # not a link: clicking it runs nothing
    assert page.evaluate("window.__pwned") is None
    # and what Markdown is meant to do still happens: math, highlighted code, a copy button
    expect(body.locator(".katex-display .katex")).to_have_count(1)
    expect(body.locator("pre code .hljs-keyword").first).to_have_text("def")
    expect(body.locator("pre .copy")).to_have_text("Copy")


def test_a_conversation_from_chat_continues_in_the_page_and_back(page, page_server):
    store = f"sqlite:///{page_server.home / 'llmkit.db'}"
    chat = Chat(url=page_server.url, session="from-python", store=store, max_tokens=12)
    chat.send("My name is Ada.")
    load(page, page_server)
    page.click("#conversations li[data-name='from-python'] .open")
    expect(page.locator(".msg.user .body")).to_have_text("My name is Ada.")
    # Chat's max_tokens is its own, not the conversation's: cap the page's reply too,
    # or an unbounded reply can outlast the wait on a slow machine
    page.click("#open-settings")
    page.fill("#max-tokens", "12")
    page.click("text=Save settings")
    expect(page.locator("#status")).to_have_text("Settings saved.")
    page.fill("#input", "What is my name?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant .usage")).to_be_visible(timeout=LONG)
    assert [m.content for m in chat.history if m.role == "user"] == [
        "My name is Ada.",
        "What is my name?",
    ]
    chat.send("Thanks.")  # and Chat goes on after the page's turn
    assert len(chat.history) == 6
    page.reload()
    page.wait_for_selector("body[data-ready]")
    expect(page.locator(".msg")).to_have_count(6)
    chat.close()


def test_a_narrow_screen_and_the_keyboard_alone(browser, page_server):
    imported(
        page_server,
        "narrow",
        ("user", "Show me some math."),
        ("assistant", "Euler: $e^{i\\pi} + 1 = 0$, and code: `x = 1`.\n\n" + LONG_CODE),
    )
    ctx = browser.new_context(viewport={"width": 375, "height": 740})
    page = ctx.new_page()
    load(page, page_server, "narrow")
    expect(page.locator(".msg.assistant .katex")).to_have_count(1)
    expect(page.locator(".msg.assistant pre code")).to_have_count(1)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width  # nothing sticks out sideways
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=RESULTS / "chat-page-375.png")
    # the list, by keyboard: the menu button, then Tab through to the conversation
    page.focus("#open-side")
    page.keyboard.press("Enter")
    expect(page.locator("#sidebar")).to_be_in_viewport()
    expect(page.locator("#new-chat")).to_be_focused()
    page.keyboard.press("Tab")  # the close button
    page.keyboard.press("Tab")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("math")
    expect(page.locator("#conversations li")).to_have_count(1)
    page.keyboard.press("Tab")
    expect(page.locator("#conversations li[data-name='narrow'] .open")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#input")).to_be_focused()
    expect(page.locator("#sidebar")).not_to_be_in_viewport()  # the list slid away again
    ctx.close()


def test_the_page_asks_for_the_key_once_per_tab(browser, tmp_path):
    s = start_server(tmp_path, "--api-key", "sesame")
    try:
        with httpx.Client(base_url=s.url) as c:
            assert c.get("/", headers={"Accept": "text/html"}).status_code == 200
            assert c.get("/conversations").status_code == 401
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(s.url + "/")
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", "wrong")
        page.keyboard.press("Enter")
        expect(page.locator("#key-error")).to_have_text("That key was refused.")
        page.fill("#key-input", "sesame")
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-ready]")
        expect(page.locator("#key-dialog")).to_be_hidden()
        expect(page.locator("#model-menu [role=option]")).to_have_count(1)
        assert page.evaluate("sessionStorage.getItem('llmkit-api-key')") == "sesame"
        page.reload()  # the same tab: no second prompt
        page.wait_for_selector("body[data-ready]")
        expect(page.locator("#key-dialog")).to_be_hidden()
        other = ctx.new_page()  # a new tab asks again
        other.goto(s.url + "/")
        expect(other.locator("#key-dialog")).to_be_visible()
        ctx.close()
    finally:
        s.stop()


# -- the look: themes, the settings sheet, the model picker's facts -------------------

BACKGROUND = "getComputedStyle(document.body).backgroundColor"


def brightness(css_color: str) -> float:
    """0 (black) to 255 (white), from a computed ``rgb(r, g, b)``."""
    r, g, b = (float(v) for v in css_color[css_color.index("(") + 1 : -1].split(",")[:3])
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_themes_follow_the_system_and_a_choice_made_by_hand_is_kept(browser, page_server):
    imported(
        page_server,
        "themes",
        ("user", "Show me code."),
        ("assistant", "Here:\n\n```python\ndef f(x):\n    return x * 2  # twice\n```\n\nDone."),
    )
    shots = {}
    for scheme in ("light", "dark"):  # no choice kept: the system's scheme
        ctx = browser.new_context(viewport={"width": 1100, "height": 700}, color_scheme=scheme)
        page = ctx.new_page()
        load(page, page_server, "themes")
        shots[scheme] = brightness(page.evaluate(BACKGROUND))
        RESULTS.mkdir(exist_ok=True)
        page.screenshot(path=RESULTS / f"chat-page-{scheme}.png")
        ctx.close()
    assert shots["light"] > 200 and shots["dark"] < 60, shots

    ctx = browser.new_context(color_scheme="dark")
    page = ctx.new_page()
    load(page, page_server, "themes")
    page.click("#open-settings")
    page.click("#settings label:has-text('Light')")  # chosen by hand: over the system
    assert brightness(page.evaluate(BACKGROUND)) > 200
    page.keyboard.press("Escape")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert brightness(page.evaluate(BACKGROUND)) > 200  # kept across a reload
    assert page.evaluate("localStorage.getItem('llmkit-theme')") == "light"
    page.click("#theme")  # the sidebar's switch: light -> dark -> system
    assert brightness(page.evaluate(BACKGROUND)) < 60
    page.click("#theme")
    assert page.evaluate("localStorage.getItem('llmkit-theme')") is None
    assert brightness(page.evaluate(BACKGROUND)) < 60  # the (dark) system again
    ctx.close()


def test_settings_open_in_a_sheet_over_the_conversation(page, page_server):
    imported(page_server, "sheet", ("user", "Hi"), ("assistant", "Hello."))
    load(page, page_server, "sheet")
    before = page.locator("#messages").bounding_box()
    page.click("#open-settings")
    expect(page.locator("#settings")).to_be_visible()
    expect(page.locator("#system")).to_be_focused()
    assert page.evaluate("document.getElementById('settings').matches(':modal')")
    assert page.locator("#messages").bounding_box() == before  # nothing pushed down
    page.fill("#system", "Answer in French.")
    page.click("text=Save settings")
    expect(page.locator("#settings")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("Settings saved.")
    with api(page_server) as c:
        assert c.get("/conversations/sheet").json()["system"] == "Answer in French."
    page.click("#open-settings")
    expect(page.locator("#system")).to_have_value("Answer in French.")
    page.keyboard.press("Escape")
    expect(page.locator("#settings")).to_be_hidden()


def mb(size: int) -> str:
    """The size as the picker writes it, in decimal units."""
    n = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{round(n) if n >= 100 or unit == 'B' else f'{n:.1f}'} {unit}"
        n /= 1000
    raise AssertionError


def test_the_model_picker_shows_each_models_size_and_context(page, page_server):
    with api(page_server) as c:
        tags = {m["name"].removesuffix(":latest"): m for m in c.get("/api/tags").json()["models"]}
        cards = c.get("/v1/models").json()["data"]
    load(page, page_server)
    page.click("#model")
    expect(page.locator("#model-menu")).to_be_visible()
    for card in cards:
        tag = tags[card["id"]]
        facts = page.locator(f"#model-menu [data-model='{card['id']}'] .fact")
        expected = [tag["details"]["parameter_size"], tag["details"]["quantization_level"]]
        expected += [mb(tag["size"]), f"{card['max_model_len'] // 1024}K context"]
        expect(facts).to_contain_text(expected)
    page.keyboard.press("Escape")
    expect(page.locator("#model-menu")).to_be_hidden()
    expect(page.locator("#model .model-facts")).to_contain_text(mb(tags[cards[0]["id"]]["size"]))
