"""The conversations API over HTTP (httpx) against real ``llmkit serve`` processes
with the bundled model: on the data directory's SQLite store, and two servers
taking turns on one conversation in a real PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Server, start_server, until

KEY = "k-conversations"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("conv"), "--api-key", KEY, "--log-requests")
    yield s
    s.stop()


@pytest.fixture()
def http(srv: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=srv.url, headers=headers, timeout=180) as c:
        yield c


def events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event, data) pairs of a server-sent event stream."""
    name = "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            yield name, json.loads(line[5:])
            name = "message"


def reply(http: httpx.Client, path: str, body: dict | None = None) -> list[tuple[str, dict]]:
    with http.stream("POST", path, json=body or {}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(events(r))


def stored(http: httpx.Client, name: str) -> list[dict]:
    return http.get(f"/conversations/{name}").json()["messages"]


def test_create_list_search_patch_rename_delete(http):
    r = http.post(
        "/conversations",
        json={"name": "notes", "system": "Be brief.", "memory": "window:2", "temperature": 0.3},
    )
    assert r.status_code == 201, r.text
    conv = r.json()
    assert (conv["name"], conv["system"], conv["memory"], conv["temperature"]) == (
        "notes",
        "Be brief.",
        "window:2",
        0.3,
    )
    assert conv["model"] == "SmolLM2-135M-Instruct" and conv["max_tokens"] is None
    again = http.post("/conversations", json={"name": "notes"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conversation_exists"
    doc = {"name": "zebra facts", "messages": [{"role": "user", "content": "Stripes, why?"}]}
    assert http.post("/conversations/import", json=doc).status_code == 201

    names = [c["name"] for c in http.get("/conversations").json()["data"]]
    assert set(names) >= {"notes", "zebra facts"}
    found = http.get("/conversations", params={"q": "STRIPES"}).json()["data"]
    assert [c["name"] for c in found] == ["zebra facts"]  # by a message, in any case
    assert [c["name"] for c in http.get("/conversations", params={"q": "note"}).json()["data"]] == [
        "notes"
    ]

    r = http.patch("/conversations/notes", json={"max_tokens": 9, "system": None})
    assert r.status_code == 200 and (r.json()["max_tokens"], r.json()["system"]) == (9, None)
    assert r.json()["temperature"] == 0.3  # what was not sent stays
    bad = http.patch("/conversations/notes", json={"memory": "forever"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "memory"
    assert http.patch("/conversations/notes", json={"temperature": 7}).status_code == 400
    unknown = http.patch("/conversations/notes", json={"model": "no-such-model"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert http.get("/conversations/notes").json()["memory"] == "window:2"  # nothing half-done

    r = http.patch("/conversations/notes", json={"name": "renamed"})
    assert r.json()["name"] == "renamed"
    assert http.get("/conversations/notes").status_code == 404
    clash = http.patch("/conversations/renamed", json={"name": "zebra facts"})
    assert clash.status_code == 409
    assert http.delete("/conversations/renamed").status_code == 204
    gone = http.get("/conversations/renamed")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "conversation_not_found"


def test_the_key_guards_the_api_but_not_the_page(srv):
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/conversations").status_code == 401
        assert c.post("/conversations/x/messages", json={"content": "hi"}).status_code == 401
        assert c.get("/").text == "Ollama is running"  # what Ollama clients look for
        page = c.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/ui/app.js" in page.text
        assert "https://" not in page.text  # nothing from a CDN
        js = c.get("/ui/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/vendor/katex/fonts/KaTeX_Main-Regular.woff2").status_code == 200
        assert c.get("/ui/../routes.py").status_code in (401, 404)
        assert c.get("/ui/%2e%2e/routes.py").status_code in (401, 404)


def test_openapi_documents_the_routes(http):
    paths = http.get("/openapi.json").json()["paths"]
    for p in (
        "/conversations",
        "/conversations/{name}",
        "/conversations/{name}/messages",
        "/conversations/{name}/regenerate",
        "/conversations/{name}/messages/{entry_id}/resend",
        "/conversations/{name}/continue",
        "/conversations/{name}/export",
        "/conversations/import",
    ):
        assert p in paths, p
    sse = paths["/conversations/{name}/messages"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in sse


def test_a_reply_streams_and_is_stored_with_its_usage(http, srv):
    http.post("/conversations", json={"name": "ask", "max_tokens": 16, "temperature": 0})
    got = reply(http, "/conversations/ask/messages", {"content": "Name a colour."})
    kinds = [k for k, _ in got]
    assert kinds[0] == "user" and kinds[-1] == "done" and kinds.count("delta") >= 2
    assert set(kinds[1:-1]) == {"delta"}
    user, done = got[0][1], got[-1][1]
    text = "".join(d["text"] for k, d in got if k == "delta")
    assert user["content"] == "Name a colour." and user["id"] > 0
    assert done["message"]["content"] == text and not done["message"]["interrupted"]
    usage = done["usage"]
    assert usage["completion_tokens"] <= 16 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["tokens_per_second"] > 0
    assert [(m["role"], m["content"]) for m in stored(http, "ask")] == [
        ("user", "Name a colour."),
        ("assistant", text),
    ]


def test_the_memory_strategy_is_applied_on_the_server(http, srv):
    turns = [
        ("user", "My cat is Tom."),
        ("assistant", "Nice."),
        ("user", "Q2"),
        ("assistant", "A2"),
    ]
    doc = {
        "name": "windowed",
        "memory": "window:1",
        "system": "You are terse.",
        "messages": [{"role": r, "content": c} for r, c in turns],
    }
    http.post("/conversations/import", json=doc)
    http.patch("/conversations/windowed", json={"max_tokens": 4})
    reply(http, "/conversations/windowed/messages", {"content": "What is my cat called?"})
    sent = [
        json.loads(line.split("request: ", 1)[1])
        for line in srv.log().splitlines()
        if "request: " in line and "What is my cat called?" in line
    ]
    assert len(sent) == 1
    contents = [m["content"] for m in sent[0]["messages"]]
    # window:1: the system prompt, the one turn before, the new message; the first turn went
    assert contents == ["You are terse.", "Q2", "A2", "What is my cat called?"]


def test_empty_and_unknown_sends_store_nothing(http):
    http.post("/conversations", json={"name": "quiet"})
    r = http.post("/conversations/quiet/messages", json={"content": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "content"
    r = http.post("/conversations/nobody/messages", json={"content": "hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "conversation_not_found"
    assert stored(http, "quiet") == []
    assert http.get("/conversations/nobody").status_code == 404  # not created by the send


def test_a_second_send_while_one_streams_is_refused_and_a_cut_reply_is_kept(http, srv):
    # max_tokens far past what the test waits for: only the client's leaving ends it
    http.post("/conversations", json={"name": "tabs", "max_tokens": 2000, "temperature": 0})
    with http.stream(
        "POST", "/conversations/tabs/messages", json={"content": "Tell a long story."}
    ) as first:
        stream = events(first)
        assert next(stream)[0] == "user"
        assert next(stream)[0] == "delta"
        assert http.get("/conversations/tabs").json()["busy"] is True
        other = http.post("/conversations/tabs/messages", json={"content": "Me too!"})
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "conversation_busy"
        assert http.post("/conversations/tabs/regenerate").status_code == 409
        assert http.patch("/conversations/tabs", json={"name": "t2"}).status_code == 409
        # still generating as the client leaves (this server runs nothing else)
        assert httpx.get(srv.url + "/health").json()["models"][0]["running"] == 1
    # the client left mid-reply (a tab's Stop): the server notices the hang-up, stores
    # what came (interrupted) and only then frees the conversation, so the first
    # answer that says "not busy" already holds the reply
    conv = until(lambda: (c := http.get("/conversations/tabs").json())["busy"] is False and c)
    roles = [(m["role"], m["interrupted"]) for m in conv["messages"]]
    assert roles == [("user", False), ("assistant", True)]
    assert conv["messages"][1]["content"]
    assert "Me too!" not in json.dumps(conv)

    # continue the cut reply: the same message grows, and is complete when done
    cut = conv["messages"][1]
    http.patch("/conversations/tabs", json={"max_tokens": 6})
    done = reply(http, "/conversations/tabs/continue")[-1][1]
    after = stored(http, "tabs")
    assert len(after) == 2 and after[1]["id"] == cut["id"] and not after[1]["interrupted"]
    assert after[1]["content"].startswith(cut["content"]) and after[1]["content"] != cut["content"]
    assert done["message"]["content"] == after[1]["content"]
    # nothing cut to continue now that the last message is a user's
    http.post(
        "/conversations/import",
        json={"name": "asking", "messages": [{"role": "user", "content": "Hm?"}]},
    )
    r = http.post("/conversations/asking/continue")
    assert r.status_code == 400


def test_regenerate_and_edit_and_resend(http):
    turns = [("user", "First."), ("assistant", "One."), ("user", "Second."), ("assistant", "Two.")]
    doc = {"name": "edits", "messages": [{"role": r, "content": c} for r, c in turns]}
    http.post("/conversations/import", json=doc)
    http.patch("/conversations/edits", json={"max_tokens": 6, "temperature": 0})
    before = stored(http, "edits")

    got = reply(http, "/conversations/edits/regenerate")
    after = stored(http, "edits")
    assert [m["content"] for m in after[:3]] == ["First.", "One.", "Second."]
    assert len(after) == 4 and after[3]["id"] > before[3]["id"]
    assert after[3]["content"] == got[-1][1]["message"]["content"]

    first = after[0]["id"]
    reply(http, f"/conversations/edits/messages/{first}/resend", {"content": "Edited."})
    edited = stored(http, "edits")
    assert [m["role"] for m in edited] == ["user", "assistant"]
    assert edited[0]["content"] == "Edited." and edited[0]["id"] > after[3]["id"]

    reply_id = edited[1]["id"]
    r = http.post(f"/conversations/edits/messages/{reply_id}/resend", json={"content": "x"})
    assert r.status_code == 400 and "no user message" in r.json()["error"]["message"]
    assert stored(http, "edits") == edited  # a refused edit drops nothing


def test_export_and_import(http):
    turns = [("user", "Q <b>?</b>"), ("assistant", "A.")]
    doc = {"name": "exp", "messages": [{"role": r, "content": c} for r, c in turns]}
    http.post("/conversations/import", json=doc)
    md = http.get("/conversations/exp/export", params={"format": "markdown"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# exp") and "Q <b>?</b>" in md.text
    data = http.get("/conversations/exp/export").json()
    assert [m["content"] for m in data["messages"]] == ["Q <b>?</b>", "A."]
    r = http.post("/conversations/import", params={"name": "exp copy"}, json=data)
    assert r.status_code == 201 and r.json()["turns"] == 1
    assert http.post("/conversations/import", json=data).status_code == 409
    bad = http.post("/conversations/import", json={"name": "x"})
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
    assert http.get("/conversations/exp/export", params={"format": "pdf"}).status_code == 400


def test_two_servers_on_one_postgres_take_turns_in_one_conversation(tmp_path, pg_url):
    env = {"LLMKIT_STORE": pg_url}
    a = start_server(tmp_path / "a", env=env)
    b = start_server(tmp_path / "b", env=env)
    try:
        ca = httpx.Client(base_url=a.url, timeout=180)
        cb = httpx.Client(base_url=b.url, timeout=180)
        r = ca.post("/conversations", json={"name": "shared", "max_tokens": 8, "temperature": 0})
        assert r.status_code == 201
        reply(ca, "/conversations/shared/messages", {"content": "Hello from A."})
        seen = stored(cb, "shared")
        assert len(seen) == 2 and seen[0]["content"] == "Hello from A."
        reply(cb, "/conversations/shared/messages", {"content": "Hello from B."})
        both = stored(ca, "shared")
        assert [m["role"] for m in both] == ["user", "assistant", "user", "assistant"]
        assert [m["content"] for m in both if m["role"] == "user"] == [
            "Hello from A.",
            "Hello from B.",
        ]
        assert ca.get("/conversations/shared").json()["turns"] == 2
        assert [c["name"] for c in cb.get("/conversations").json()["data"]] == ["shared"]
    finally:
        a.stop()
        b.stop()


def test_the_docs_curl_example_runs(server):
    docs = Path(__file__).resolve().parent.parent / "docs/reference/endpoints/conversations.md"
    code = re.search(r"```bash\n(.*?)```", docs.read_text(), flags=re.S).group(1)
    out = subprocess.run(
        ["bash", "-c", code.replace("http://localhost:8000", server.url)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    assert '"name":"curl-demo"' in out and '"error"' not in out
    assert "event: user" in out and "event: delta" in out and "event: done" in out
    assert '"tokens_per_second"' in out
    assert "# curl-demo" in out and "Say hello." in out  # the export, in Markdown


def test_a_name_with_a_slash_and_spaces_is_addressable(http):
    name = "work/ideas ü"
    at = "/conversations/" + quote(name, safe="")  # how the page sends it
    assert http.post("/conversations", json={"name": name, "max_tokens": 4}).status_code == 201
    assert http.get(at).json()["name"] == name
    got = reply(http, at + "/messages", {"content": "Hi."})
    assert got[-1][0] == "done" and len(stored(http, quote(name, safe=""))) == 2
    assert http.get(at + "/export", params={"format": "markdown"}).text.startswith(f"# {name}")
    assert http.patch(at, json={"system": "S."}).json()["system"] == "S."
    assert http.delete(at).status_code == 204
    assert http.get(at).status_code == 404
