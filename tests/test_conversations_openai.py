"""``/v1/conversations`` (OpenAI's Conversations API) on a real ``llmkit serve`` with
the bundled model and a real PostgreSQL store, driven by the ``openai`` SDK's
``client.conversations``: CRUD, items of every kind with pagination, the 404s and
bounds, ``responses.create(conversation=...)`` over turns (whole and streamed), the
same conversation seen by ``Chat`` and ``llmkit sessions``, and a second server on
the same database, restarted. Every object answered is validated with the SDK's
types, generated from OpenAI's published spec (raw JSON, not the SDK's parse)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItemList,
    Message,
)
from openai.types.conversations.conversation_item import (
    McpApprovalRequest,
    McpApprovalResponse,
    McpCall,
    McpListTools,
)
from openai.types.responses import (
    Response,
    ResponseFunctionToolCallItem,
    ResponseFunctionToolCallOutputItem,
    ResponseReasoningItem,
)

from llmkit import Chat
from tests.conftest import Server, requests_sent, start_server
from tests.pg import postgres  # noqa: F401  (a fixture)

MODEL = "SmolLM2-135M-Instruct"
# The spec's item types by kind (its ConversationItem is a union on ``type``).
ITEM_TYPES: dict[str, Any] = {
    "message": Message,
    "function_call": ResponseFunctionToolCallItem,
    "function_call_output": ResponseFunctionToolCallOutputItem,
    "reasoning": ResponseReasoningItem,
    "mcp_list_tools": McpListTools,
    "mcp_call": McpCall,
    "mcp_approval_request": McpApprovalRequest,
    "mcp_approval_response": McpApprovalResponse,
}
EVERY_KIND = [
    {"type": "message", "role": "user", "content": "What is 6 times 7?"},
    {"type": "function_call", "call_id": "call_1", "name": "mul", "arguments": '{"a":6,"b":7}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "6*7"}]},
    {
        "type": "mcp_list_tools",
        "server_label": "calc",
        "tools": [{"name": "add", "input_schema": {"type": "object"}}],
    },
    {
        "type": "mcp_approval_request",
        "id": "mcpr_1",
        "server_label": "calc",
        "name": "add",
        "arguments": '{"a":1}',
    },
    {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
    {
        "type": "mcp_call",
        "server_label": "calc",
        "name": "add",
        "arguments": '{"a":1}',
        "output": "1",
        "approval_request_id": "mcpr_1",
    },
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "It is 42."}],
    },
]


USER = {"role": "user", "content": "x"}


def valid_item(d: dict[str, Any]) -> Any:
    return ITEM_TYPES[d["type"]].model_validate(d)


@pytest.fixture(scope="module")
def store(postgres: str) -> str:  # noqa: F811
    import psycopg

    with psycopg.connect(postgres.replace("+psycopg", "") + "/postgres", autocommit=True) as c:
        c.execute('CREATE DATABASE "conversations"')
    return f"{postgres}/conversations"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store: str) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("a"), "--store", store, "--log-requests")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.v1, timeout=120) as h:
        yield h


def test_crud_and_items_of_every_kind_with_pagination(client, http):
    conv = client.conversations.create(
        metadata={"topic": "maths"}, items=[{"role": "user", "content": "Hello"}]
    )
    assert conv.id.startswith("conv_") and conv.metadata == {"topic": "maths"}
    raw = http.get(f"/conversations/{conv.id}").json()
    assert Conversation.model_validate(raw).id == conv.id and raw["object"] == "conversation"

    added = http.post(f"/conversations/{conv.id}/items", json={"items": EVERY_KIND}).json()
    ConversationItemList.model_validate(added)
    assert [d["type"] for d in added["data"]] == [k["type"] for k in EVERY_KIND]
    for given, stored in zip(EVERY_KIND, added["data"], strict=True):
        valid_item(stored)
        for key in ("call_id", "arguments", "server_label", "approve", "output", "tools"):
            if key in given:
                assert stored[key] == given[key]
    assert added["data"][5]["id"] == "mcpr_1"  # a given id is kept
    prefixes = [d["id"].split("_")[0] for d in added["data"]]
    assert prefixes == ["msg", "fc", "fco", "rs", "mcpl", "mcpr", "mcpa", "mcp", "msg"]

    # pagination: the SDK follows has_more/last_id through pages of 4, newest first
    pages = client.conversations.items.list(conv.id, limit=4)
    assert len(pages.data) == 4 and pages.has_more
    every = [x.id for x in client.conversations.items.list(conv.id, limit=4)]
    ascending = [x.id for x in client.conversations.items.list(conv.id, order="asc", limit=100)]
    assert every == ascending[::-1] and len(every) == 10
    after = client.conversations.items.list(conv.id, order="asc", after=ascending[2], limit=2)
    assert [x.id for x in after.data] == ascending[3:5]
    raw = http.get(f"/conversations/{conv.id}/items", params={"order": "asc", "limit": 100})
    for d in raw.json()["data"]:
        valid_item(d)
    # include: the reasoning item's thinking comes sealed as /v1/responses gives it
    sealed = http.get(
        f"/conversations/{conv.id}/items/{ascending[4]}",
        params={"include[]": "reasoning.encrypted_content"},
    ).json()
    assert sealed["type"] == "reasoning" and sealed["encrypted_content"]
    assert (
        "encrypted_content" not in http.get(f"/conversations/{conv.id}/items/{ascending[4]}").json()
    )

    item = client.conversations.items.retrieve(ascending[8], conversation_id=conv.id)
    assert item.type == "mcp_call" and item.output == "1"
    after_delete = http.delete(f"/conversations/{conv.id}/items/{ascending[8]}").json()
    assert Conversation.model_validate(after_delete).id == conv.id
    assert len(list(client.conversations.items.list(conv.id, limit=100))) == 9

    updated = client.conversations.update(conv.id, metadata={"topic": "arithmetic"})
    assert (
        client.conversations.retrieve(conv.id).metadata
        == updated.metadata
        == {"topic": "arithmetic"}
    )
    gone = http.delete(f"/conversations/{conv.id}").json()
    assert ConversationDeletedResource.model_validate(gone).deleted and gone["id"] == conv.id
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)


def test_unknown_ids_are_404s_and_bounds_400s_before_any_work(client, http):
    missing = "conv_doesnotexist"
    for method, path in [
        ("GET", f"/conversations/{missing}"),
        ("POST", f"/conversations/{missing}"),
        ("DELETE", f"/conversations/{missing}"),
        ("GET", f"/conversations/{missing}/items"),
        ("POST", f"/conversations/{missing}/items"),
        ("GET", f"/conversations/{missing}/items/msg_1"),
        ("DELETE", f"/conversations/{missing}/items/msg_1"),
    ]:
        body = {"metadata": {}} if path.endswith(missing) else {"items": [USER]}
        r = http.request(method, path, json=body if method == "POST" else None)
        assert r.status_code == 404, (method, path, r.text)
        error = r.json()["error"]
        assert missing in error["message"] and error["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model=MODEL, input="Hi", conversation=missing)
    assert e.value.body["param"] == "conversation"

    conv = client.conversations.create()
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve("msg_nothere", conversation_id=conv.id)
    cases = [
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata."),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"items": [USER] * 21}, "items"),
        ({"items": [{"type": "message", "role": "pirate", "content": "x"}]}, "items.0.role"),
        ({"items": [{"type": "mcp_call", "server_label": "s"}]}, "items.0.name"),
        ({"items": [USER, {**USER, "id": "x" * 65}]}, "items.1.id"),
    ]
    for body, param in cases:
        r = http.post("/conversations", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"].startswith(param), r.text
    many = {"items": [USER] * 21}
    assert http.post(f"/conversations/{conv.id}/items", json=many).status_code == 400
    # nothing half-written: the conversation still has no items
    assert client.conversations.items.list(conv.id).data == []
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model=MODEL, input="Hi", conversation=conv.id, previous_response_id="resp_x"
        )
    assert e.value.body["param"] == "conversation"


def test_responses_grow_a_conversation_turn_after_turn(server, client, http, store, tmp_path):
    conv = client.conversations.create(
        items=[{"role": "user", "content": "My name is Ada."}],
        metadata={"who": "test"},
    )
    first = client.responses.create(
        model=MODEL, input="Remember the number 417.", conversation=conv.id, max_output_tokens=8
    )
    raw = http.get(f"/responses/{first.id}").json()
    assert Response.model_validate(raw).conversation.id == conv.id
    # streamed, with the {"id": ...} form
    events = list(
        client.responses.create(
            model=MODEL,
            input="What number did I say?",
            conversation={"id": conv.id},
            max_output_tokens=8,
            stream=True,
        )
    )
    assert events[-1].type in ("response.completed", "response.incomplete")
    second = events[-1].response
    third = client.responses.create(
        model=MODEL, input="And my name?", conversation=conv.id, max_output_tokens=8
    )
    # what the model was sent for the third turn: every earlier item, in order
    sent = [m["content"] for m in requests_sent(server)[-1]["messages"]]
    said = [first.output_text, second.output_text]
    assert sent == [
        "My name is Ada.",
        "Remember the number 417.",
        said[0],
        "What number did I say?",
        said[1],
        "And my name?",
    ]
    items = list(client.conversations.items.list(conv.id, order="asc"))
    roles = ["user", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert [(x.type, x.role) for x in items] == [("message", r) for r in roles]
    assert items[2].id == first.output[0].id and items[6].id == third.output[0].id

    # the same conversation, as Chat and `llmkit sessions` see it
    listed = subprocess.run(
        [sys.executable, "-m", "llmkit", "sessions", "list", "--json", "--store", store],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LLMKIT_HOME": str(tmp_path / "home")},
    )
    session = next(s for s in json.loads(listed.stdout) if s["id"] == conv.id)
    assert session["name"] == conv.id and session["turns"] == 4
    chat = Chat(server.url, session=conv.id, store=store, max_tokens=4)
    try:
        assert [m.content for m in chat.history][:2] == [
            "My name is Ada.",
            "Remember the number 417.",
        ]
        chat.send("Thanks.")
    finally:
        chat.close()
    last_two = client.conversations.items.list(conv.id, limit=2).data
    assert [x.role for x in last_two] == ["assistant", "user"]
    assert last_two[1].content[0].text == "Thanks."

    # and a conversation made by Chat is reachable by its id
    made = Chat(server.url, session="made-by-chat", store=store, max_tokens=4)
    try:
        made.send("Hello from Chat.")
        conv_id = made.conversation.id
    finally:
        made.close()
    assert client.conversations.retrieve(conv_id).id == conv_id
    (user, reply) = client.conversations.items.list(conv_id, order="asc").data
    assert user.content[0].text == "Hello from Chat." and reply.role == "assistant"
    nxt = client.responses.create(
        model=MODEL, input="Go on.", conversation=conv_id, max_output_tokens=4
    )
    sent = [m for m in requests_sent(server)[-1]["messages"] if m["role"] != "system"]
    assert sent[0]["content"] == "Hello from Chat."
    assert nxt.conversation.id == conv_id


def test_a_second_server_on_postgres_and_a_restart(server, client, store, tmp_path):
    conv = client.conversations.create(items=[{"role": "user", "content": "The code is 93."}])
    other = start_server(tmp_path / "b", "--store", store, "--log-requests")
    try:
        b = other.client()
        assert b.conversations.retrieve(conv.id).id == conv.id
        b.responses.create(
            model=MODEL, input="What is the code?", conversation=conv.id, max_output_tokens=4
        )
        sent = requests_sent(other)[-1]["messages"]
        assert [m["content"] for m in sent] == ["The code is 93.", "What is the code?"]
        # what server B appended, server A lists
        assert len(client.conversations.items.list(conv.id).data) == 3
    finally:
        other.stop()
    again = start_server(tmp_path / "c", "--store", store, "--log-requests")
    try:
        c = again.client()
        c.responses.create(model=MODEL, input="Thanks.", conversation=conv.id, max_output_tokens=4)
        sent = requests_sent(again)[-1]["messages"]
        assert [m["content"] for m in sent][:2] == ["The code is 93.", "What is the code?"]
        assert len(c.conversations.items.list(conv.id).data) == 5
    finally:
        again.stop()


def test_an_older_store_gets_ids_for_its_conversations_and_messages(tmp_path):
    from llmkit.memory.store import Store
    from tests.test_chat_thinking import old_database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old_database(url)  # made before m005 and m006, with a conversation in it
    with Store(url) as store:
        conv = store.get("old")
        assert conv.id.startswith("conv_") and store.conversation(conv.id).name == "old"
        page, more = store.list_items(conv.id, after=None, limit=10, order="asc")
        assert [(x["role"], x["content"][0]["text"]) for x in page] == [
            ("user", "Hi"),
            ("assistant", "Hello."),
        ]
        assert not more and store.get_item(conv.id, page[1]["id"]) == page[1]
        for x in page:
            valid_item(x)
    with Store(url) as again:  # the id was given once, and kept
        assert again.get("old").id == conv.id


def test_calls_and_outputs_of_a_conversation_are_sent_as_tool_turns(server, client):
    conv = client.conversations.create(items=EVERY_KIND)
    client.responses.create(model=MODEL, input="Thanks.", conversation=conv.id, max_output_tokens=2)
    sent = requests_sent(server)[-1]["messages"]
    # listed tools and approvals are bookkeeping, not context
    roles = ["user", "assistant", "tool", "assistant", "tool", "assistant", "user"]
    assert [m["role"] for m in sent] == roles
    call = {"id": "call_1", "name": "mul", "arguments_json": '{"a":6,"b":7}'}
    assert sent[1]["tool_calls"] == [call] and sent[2]["tool_call_id"] == "call_1"
    (mcp,) = sent[3]["tool_calls"]
    assert mcp["name"] == "add" and sent[4]["tool_call_id"] == mcp["id"]
    assert (sent[2]["content"], sent[4]["content"]) == ("42", "1")
    # a reasoning item's thinking goes with the assistant turn after it (here: the call)
    assert sent[3].get("reasoning") == "6*7" and sent[5]["content"] == "It is 42."
