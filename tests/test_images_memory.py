"""Images kept with a conversation: the store (SQLite and PostgreSQL), the memory
strategies, ``Chat``, the conversations API the page uses, and ``llmkit chat`` /
``run`` with ``--image`` and ``/image``.

The server is an app in this process on a real socket, serving ``Seer``
(``tests/vision_toy.py``), which answers with the images it was sent: so each
test sees what the model was given, turn by turn, against hashes computed here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from llmkit.api.app import create_app
from llmkit.cli.main import cli
from llmkit.config.settings import ServeSettings
from llmkit.core.images import from_bytes
from llmkit.core.types import Message
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.errors import InvalidRequestError
from llmkit.memory import migrations
from llmkit.memory import strategies as st
from llmkit.memory.chat import Chat
from llmkit.memory.database import default_store_url
from llmkit.memory.store import Store
from tests.conftest import serving
from tests.vision_toy import Seer, picture, sha

RED, BLUE, GREEN = picture("red"), picture("blue", (5, 7), "JPEG"), picture("green", (4, 4))


def img(data: bytes):  # type: ignore[no-untyped-def]
    return from_bytes(data, param="test")


def uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    db = tmp_path_factory.mktemp("store") / "db.sqlite"
    registry = ModelRegistry([ServedModel(["seer"], Seer())])
    app = create_app(ServeSettings(store=f"sqlite:///{db}", max_images=3), registry)
    with serving(app) as u:
        yield u


def sent(reply: str) -> list[tuple[str, str, list[str]]]:
    """What Seer was given: (role, text, image hashes) per message."""
    return [(role, text, [i[0] for i in images]) for role, text, images in json.loads(reply)]


# -- strategies: pure ----------------------------------------------------------------------

A, B, C = img(RED), img(BLUE), img(GREEN)
HISTORY = [
    Message("user", "one", images=(A,)),
    Message("assistant", "1"),
    Message("user", "two", images=(B,)),
    Message("assistant", "2"),
    Message("user", "three", images=(C,)),
]


def test_keep_images_sends_only_the_most_recent_again_and_says_so():
    buffer = st.parse_strategy("buffer")
    out = st.select_messages(buffer, system=None, history=HISTORY, keep_images=1)
    assert [m.images for m in out] == [(), (), (B,), (), (C,)]
    assert out[0].content == "[1 earlier image not sent again]\none"
    assert st.dropped_images(out, HISTORY) == 1
    none = st.select_messages(buffer, system=None, history=HISTORY, keep_images=0)
    assert [m.images for m in none] == [(), (), (), (), (C,)]  # the new turn's always go
    every = st.select_messages(buffer, system=None, history=HISTORY)
    assert every == HISTORY


def test_a_budget_drops_old_images_before_whole_exchanges():
    tokens = st.parse_strategy("tokens")
    with_images = st.estimate_tokens(HISTORY)
    text_only = st.estimate_tokens([st.without_images(m) for m in HISTORY[:-1]] + HISTORY[-1:])
    assert text_only < with_images - st.IMAGE_TOKENS_ESTIMATE  # the case is a real one
    out = st.select_messages(tokens, system=None, history=HISTORY, budget=text_only)
    assert [m.role for m in out] == [m.role for m in HISTORY]  # every exchange kept
    assert [len(m.images) for m in out] == [0, 0, 0, 0, 1]
    assert "not sent again" in out[0].content and "not sent again" in out[2].content
    # With room for everything, nothing is dropped.
    assert st.select_messages(tokens, system=None, history=HISTORY, budget=with_images) == HISTORY


def test_the_summariser_reads_where_images_were():
    prompt = st.summary_prompt(None, HISTORY[:2])
    assert "User: [image] one" in prompt[1].content and not prompt[1].images


# -- the store: SQLite and PostgreSQL ------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    with Store(url) as s:
        yield s


def _rows(store: Store, table: str) -> int:
    with store._engine.connect() as c:
        return c.scalar(sa.text(f"SELECT count(*) FROM {table}"))


def test_images_are_stored_once_each_and_go_with_their_last_message(store):
    store.create("a")
    store.create("b")
    store.append("a", "user", "look", images=[A, B, A])
    store.append("a", "assistant", "ok")
    store.append("b", "user", "again", images=[A])
    assert _rows(store, "images") == 2 and _rows(store, "message_images") == 4
    first = store.entries("a")[0]
    assert [i.sha256 for i in first.images] == [sha(RED), sha(BLUE), sha(RED)]
    assert first.images[1].data == BLUE and first.images[1].mime == "image/jpeg"
    assert store.image(sha(BLUE)).data == BLUE
    with pytest.raises(InvalidRequestError):
        store.append("a", "assistant", "no", images=[A])
    store.delete("a")
    assert store.image(sha(BLUE)) is None and store.image(sha(RED)).data == RED
    store.delete_entries_from("b", store.entries("b")[0].id)
    assert store.image(sha(RED)) is None and _rows(store, "images") == 0


def test_export_carries_each_image_once_and_imports_back(store):
    store.create("a")
    store.append("a", "user", "look", images=[A, B])
    store.append("a", "assistant", "ok")
    store.append("a", "user", "same", images=[A])
    doc = json.loads(json.dumps(store.export("a")))  # through JSON, as a file
    assert sorted(doc["images"]) == sorted([sha(RED), sha(BLUE)])
    assert doc["messages"][2]["images"] == [sha(RED)]
    assert base64.b64decode(doc["images"][sha(BLUE)]["data"]) == BLUE
    store.import_(doc, name="copy")
    assert [[i.data for i in e.images] for e in store.entries("copy")] == [[RED, BLUE], [], [RED]]
    assert _rows(store, "images") == 2
    tampered = json.loads(json.dumps(doc))
    tampered["images"][sha(RED)]["data"] = base64.b64encode(GREEN).decode()
    with pytest.raises(InvalidRequestError, match="does not hash to its key"):
        store.import_(tampered, name="bad")
    assert "![image](sha256:" in store.to_markdown("copy")


def test_a_store_made_before_images_gains_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        migrations.applied.create(conn)
        for fn in migrations.MIGRATIONS:
            if fn is migrations.m007_message_images:
                break
            fn(conn)
            conn.execute(migrations.applied.insert().values(name=fn.__name__, applied_at=_now()))
    engine.dispose()
    with Store(url) as s:
        s.create("c")
        s.append("c", "user", "hi", images=[A])
        assert s.entries("c")[0].images == (A,)


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)


# -- Chat ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["openai", "ollama", "anthropic"])
def test_chat_sends_paths_bytes_and_images_and_keeps_them(url, tmp_path, dialect):
    path = tmp_path / "red.png"
    path.write_bytes(RED)
    store = f"sqlite:///{tmp_path / 'chat.sqlite'}"
    chat = Chat(url, "seer", session="s", store=store, dialect=dialect)  # type: ignore[arg-type]
    first = sent(chat.send("look", images=[path, BLUE]))
    assert first[-1] == ("user", "look", [sha(RED), sha(BLUE)])
    second = sent(chat.send("and this", images=[C]))
    assert [s[2] for s in second] == [[sha(RED), sha(BLUE)], [], [sha(GREEN)]]  # buffer: all again
    assert [[i.sha256 for i in e.images] for e in chat.entries][::2] == [
        [sha(RED), sha(BLUE)],
        [sha(GREEN)],
    ]
    chat.close()
    again = Chat(url, "seer", session="s", store=store, dialect=dialect, keep_images=0)  # type: ignore[arg-type]
    third = sent(again.send("now"))
    assert [s[2] for s in third] == [[], [], [], [], []]
    assert third[0][1].startswith("[2 earlier images not sent again]")
    assert again.last_dropped_images == 3
    again.close()


def test_chat_refuses_a_bad_file_before_storing_anything(url, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    store = f"sqlite:///{tmp_path / 'chat.sqlite'}"
    chat = Chat(url, "seer", session="s", store=store)
    with pytest.raises(InvalidRequestError, match="not an image"):
        chat.send("look", images=[bad])
    with pytest.raises(InvalidRequestError, match="Can't read the image"):
        chat.send("look", images=[tmp_path / "missing.png"])
    assert chat.entries == []
    chat.close()


def test_chat_counts_an_image_as_the_server_does(url, tmp_path):
    chat = Chat(url, "seer", session="s", store=f"sqlite:///{tmp_path / 'c.sqlite'}")
    counter = chat._counter()
    msgs = [Message("user", "hi", images=(A, B))]
    assert counter(msgs) == chat.client.count_tokens("seer", msgs) == 2 + 2 * 100
    chat.close()


# -- the conversations API (the page's) ----------------------------------------------------


def _events(r: httpx.Response) -> list[tuple[str, dict]]:
    out, event = [], None
    for line in r.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            out.append((event, json.loads(line[6:])))
    return out


def test_a_turn_with_images_is_sent_stored_listed_and_served(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/conversations", json={"name": "pics"}).status_code == 201
        body = {"content": "what?", "images": [uri(RED), base64.b64encode(BLUE).decode()]}
        with http.stream("POST", "/conversations/pics/messages", json=body) as r:
            events = _events(r)
        user = events[0][1]
        assert events[0][0] == "user"
        assert [(i["sha256"], i["mime"], i["width"], i["height"]) for i in user["images"]] == [
            (sha(RED), "image/png", 8, 6),
            (sha(BLUE), "image/jpeg", 5, 7),
        ]
        reply = "".join(e[1]["text"] for e in events if e[0] == "delta")
        assert sent(reply)[-1][2] == [sha(RED), sha(BLUE)]
        got = http.get("/conversations/pics").json()["messages"][0]["images"]
        assert got == user["images"]
        pic = http.get(got[1]["url"])
        assert pic.status_code == 200 and pic.content == BLUE
        assert (
            pic.headers["content-type"] == "image/jpeg"
            and "immutable" in pic.headers["cache-control"]
        )
        missing = http.get("/conversations/images/" + hashlib.sha256(b"x").hexdigest())
        assert missing.status_code == 404 and "error" in missing.json()
        # An edit without images keeps them; with a list, it replaces them.
        uid = user["id"]
        with http.stream(
            "POST", f"/conversations/pics/messages/{uid}/resend", json={"content": "edited"}
        ) as r:
            kept = _events(r)[0][1]
        assert [i["sha256"] for i in kept["images"]] == [sha(RED), sha(BLUE)]
        body = {"content": "none now", "images": []}
        with http.stream(
            "POST", f"/conversations/pics/messages/{kept['id']}/resend", json=body
        ) as r:
            assert _events(r)[0][1]["images"] == []
        # Export and import carry them.
        doc = http.get("/conversations/pics/export").json()
        assert "images" not in doc  # the last edit left the conversation without any
        with http.stream(
            "POST", "/conversations/pics/messages", json={"content": "", "images": [uri(GREEN)]}
        ) as r:
            _events(r)
        doc = http.get("/conversations/pics/export").json()
        assert list(doc["images"]) == [sha(GREEN)]
        assert http.post("/conversations/import?name=pics2", json=doc).status_code == 201
        back = http.get("/conversations/pics2").json()["messages"]
        assert [i["sha256"] for m in back for i in m["images"]] == [sha(GREEN)]


def test_bad_turn_images_are_a_400_and_nothing_is_stored(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/conversations", json={"name": "bad"}).status_code == 201
        cases = [
            (
                {"content": "x", "images": ["data:image/png;base64,aGVsbG8="]},
                "images.0",
                "not an image",
            ),
            ({"content": "x", "images": [uri(RED)] * 4}, "images", "--max-images"),
            ({"content": "", "images": []}, "content", "needs content"),
        ]
        for body, param, words in cases:
            r = http.post("/conversations/bad/messages", json=body)
            assert r.status_code in (400, 422), r.text
            assert words in r.text and (param is None or r.json()["error"]["param"] == param)
        assert http.get("/conversations/bad").json()["messages"] == []


def test_a_text_only_model_refuses_a_turns_images(server):
    name = "SmolLM2-135M-Instruct"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/conversations", json={"name": "vision?", "model": name})
        assert r.status_code == 201
        r = http.post(
            "/conversations/vision%3F/messages", json={"content": "x", "images": [uri(RED)]}
        )
        assert r.status_code == 400 and name in r.json()["error"]["message"]
        assert r.json()["error"]["param"] == "images"
        assert http.get("/conversations/vision%3F").json()["messages"] == []


# -- llmkit chat / run ---------------------------------------------------------------------


def test_chat_and_run_take_image_flags_and_the_image_command(url, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    a.write_bytes(RED)
    b.write_bytes(BLUE)
    env = {"LLMKIT_HOME": str(tmp_path / "home")}
    args = ["chat", "--url", url, "--model", "seer", "--session", "s", "--plain", "--image", str(a)]
    lines = f"look\n/image {b}\n/image {tmp_path / 'nope.png'}\nagain\n/exit\n"
    out = CliRunner().invoke(cli, args, input=lines, env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())  # rich wraps long lines
    assert "(5x7 image/jpeg); it goes with your next message" in said
    assert "Can't read the image" in said  # a bad /image: said, and the chat goes on
    with Store(default_store_url(tmp_path / "home")) as store:
        users = [e for e in store.entries("s") if e.role == "user"]
    assert [(e.content, [i.sha256 for i in e.images]) for e in users] == [
        ("look", [sha(RED)]),
        ("again", [sha(BLUE)]),
    ]
    one = CliRunner().invoke(
        cli,
        ["run", "--url", url, "seer", "what?", "--image", str(b)],
        env=env,
        catch_exceptions=False,
    )
    assert one.exit_code == 0, one.output
    assert sent(one.output.strip())[-1] == ("user", "what?", [sha(BLUE)])
    bad = CliRunner().invoke(
        cli, ["run", "--url", url, "seer", "x", "--image", str(tmp_path / "none.png")], env=env
    )
    assert bad.exit_code == 1 and "Can't read the image" in bad.output


def test_a_responses_chain_sends_its_images_again(url):
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    item = {"role": "user", "content": [{"type": "input_image", "image_url": uri(RED)}]}
    first = client.responses.create(model="seer", input=[item])
    second = client.responses.create(model="seer", input="again?", previous_response_id=first.id)
    assert [s[2] for s in sent(second.output_text)] == [[sha(RED)], [], []]
    listed = client.responses.input_items.list(first.id).data[0].content[0]
    assert listed.type == "input_image" and listed.image_url == uri(RED)
