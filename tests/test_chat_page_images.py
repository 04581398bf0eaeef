"""Images on the chat page, in Chromium: attached by the file picker, pasted and
dropped, shown as thumbnails in the composer, sent, and shown with the stored turn.

The app runs in this process on a stand-in vision engine that reports what reached
it (each image's size and hash, and whether it is a PNG by its own bytes), so the
test checks the bytes the page sent against the file it attached, through the
conversations API's images contract (branch ``vapi``). An image the server refuses
(a PNG cut short) shows the server's error and the turn goes back to the composer.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image as PILImage
from playwright.sync_api import Browser, Page, expect

from llmkit.api.app import create_app
from llmkit.config.settings import ServeSettings
from llmkit.core.types import Chunk, EngineInfo, GenerateRequest, Usage
from llmkit.engines.registry import ModelRegistry, ServedModel
from tests.browser import RESULTS, chromium, watched_page
from tests.conftest import serving
from tests.toy_engine import ToyEngine, ToyOptions


class Seer(ToyEngine):
    """Says what images the last user turn brought: ``WxH:sha256`` each."""

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        last = [m for m in req.messages or () if m.role == "user"][-1]
        seen = " ".join(f"{i.width}x{i.height}:{i.sha256}" for i in last.images)
        yield Chunk(
            text=f"I see {len(last.images)}: {seen}",
            finish_reason="stop",
            usage=Usage(prompt_tokens=1, completion_tokens=1),
        )

    @property
    def info(self) -> EngineInfo:
        # room for the images: the toy's 1024 tokens would not hold three
        return replace(super().info, capabilities=("completion", "vision"), context_length=65536)


def png(color: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


RED, GREEN, BLUE = png("red", (40, 30)), png("green", (20, 20)), png("blue", (16, 48))


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("images")
    registry = ModelRegistry([ServedModel(["seer"], Seer(ToyOptions()))])
    app = create_app(ServeSettings(store=f"sqlite:///{tmp / 'db.sqlite'}"), registry)
    with serving(app) as u:
        yield u


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    with watched_page(browser, 1100, 800) as page:
        yield page


def paste(page: Page, data: bytes, name: str) -> None:
    """A paste of an image file into the message box, as the clipboard gives it."""
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "image/png"}));
            document.getElementById("input").dispatchEvent(
                new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
        }""",
        [base64.b64encode(data).decode(), name],
    )


def drop(page: Page, data: bytes, name: str) -> None:
    """A file dragged from the desktop and dropped on the composer."""
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "image/png"}));
            const target = document.getElementById("composer");
            for (const type of ["dragenter", "dragover", "drop"]) {
                const init = {dataTransfer: dt, bubbles: true, cancelable: true};
                target.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [base64.b64encode(data).decode(), name],
    )


def test_attach_paste_and_drop_images_then_send_them(page: Page, url: str, tmp_path: Path):
    (tmp_path / "red.png").write_bytes(RED)
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready]")
    page.click("#model")
    page.click("#model-menu [data-model='seer']")
    page.set_input_files("#attach-file", str(tmp_path / "red.png"))  # the 📎 button's picker
    paste(page, GREEN, "green.png")
    drop(page, BLUE, "blue.png")
    thumbs = page.locator("#attachments .thumb img")
    expect(thumbs).to_have_count(3)
    page.locator("#attachments .thumb").nth(1).locator(".remove").click()  # the green one goes
    expect(thumbs).to_have_count(2)
    paste(page, GREEN, "green.png")
    expect(thumbs).to_have_count(3)
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=RESULTS / "chat-page-images-composer.png")

    page.fill("#input", "What are these?")
    page.keyboard.press("Enter")
    sent = [RED, BLUE, GREEN]  # in the order they were attached
    said = "I see 3: " + " ".join(
        f"{PILImage.open(io.BytesIO(b)).width}x{PILImage.open(io.BytesIO(b)).height}:"
        f"{hashlib.sha256(b).hexdigest()}"
        for b in sent
    )
    expect(page.locator(".msg.assistant .body")).to_have_text(said, timeout=30_000)
    expect(page.locator("#attachments")).to_be_hidden()  # the composer is empty again
    shown = page.locator(".msg.user .thumb img")
    expect(shown).to_have_count(3)

    name = page.inner_text("#title")
    assert name == "What are these?"
    with httpx.Client(base_url=url) as c:
        stored = c.get("/conversations/" + quote(name, safe="")).json()["messages"][0]
        assert [i["sha256"] for i in stored["images"]] == [
            hashlib.sha256(b).hexdigest() for b in sent
        ]

    page.reload()  # from the store: each thumbnail is the stored image
    page.wait_for_selector("body[data-ready]")
    expect(shown).to_have_count(3)
    for img, data in zip(shown.all(), sent, strict=True):
        expect(img).to_have_js_property("complete", True)
        w = PILImage.open(io.BytesIO(data)).width
        assert img.evaluate("i => i.naturalWidth") == w
    page.screenshot(path=RESULTS / "chat-page-images.png")


def test_a_refused_image_never_leaves_or_comes_back_to_the_composer(page: Page, url: str):
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready]")
    bmp = io.BytesIO()
    PILImage.new("RGB", (4, 4), "red").save(bmp, format="BMP")
    page.evaluate(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "red.bmp", {type: "image/bmp"}));
            document.getElementById("input").dispatchEvent(
                new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
        }""",
        base64.b64encode(bmp.getvalue()).decode(),
    )
    expect(page.locator("#status")).to_contain_text("red.bmp: not a PNG")  # refused here
    expect(page.locator("#attachments .thumb")).to_have_count(0)

    cut = RED[:40]  # a PNG cut short: only the server can tell
    paste(page, cut, "cut.png")
    page.fill("#input", "Look at this.")
    page.keyboard.press("Enter")
    expect(page.locator("#title")).to_have_text("Look at this.")  # created, then refused
    expect(page.locator("#status")).not_to_contain_text("red.bmp")
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#attachments .thumb")).to_have_count(1)  # given back, to try again
    expect(page.locator("#input")).to_have_value("Look at this.")
    expect(page.locator(".msg")).to_have_count(0)
    conv = "/conversations/" + quote("Look at this.", safe="")
    with httpx.Client(base_url=url) as c:
        assert c.get(conv).json()["messages"] == []  # nothing was kept
        uri = "data:image/png;base64," + base64.b64encode(cut).decode()
        r = c.post(conv + "/messages", json={"content": "Look at this.", "images": [uri]})
        assert r.status_code == 400
    expect(page.locator("#status")).to_have_text(r.json()["error"]["message"])  # the server's
