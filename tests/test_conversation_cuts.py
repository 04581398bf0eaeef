"""A conversation reply cut by a client that leaves at any moment: before the
first piece, between pieces, during the final save. Whatever the moment, the
reply is stored once (interrupted when cut) and stored before the conversation
is free again, so the first GET that says "not busy" holds it.

A real ``uvicorn`` on loopback serves the app in this process, on an engine that
paces its pieces, with the store's writes and reads slowed a little: that
widens the windows the races lived in (a reply saved twice when the client left
during its save; a GET that read the messages, then found the turn released)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from llmkit.api.app import create_app
from llmkit.config.settings import ServeSettings
from llmkit.core.types import Chunk, GenerateRequest, Usage
from llmkit.engines.registry import ModelRegistry, ServedModel
from llmkit.memory.store import Store
from tests.conftest import serving, until
from tests.toy_engine import ToyEngine, ToyOptions

PIECES = 30


class Paced(ToyEngine):
    """PIECES pieces, a few milliseconds apart at random."""

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:  # type: ignore[override]
        for i in range(PIECES):
            await asyncio.sleep(random.choice([0, 0.001, 0.003]))
            last = i == PIECES - 1
            yield Chunk(
                text=f"w{i} ",
                finish_reason="stop" if last else None,
                usage=Usage(prompt_tokens=1, completion_tokens=PIECES) if last else None,
            )


def slowed(method):  # type: ignore[no-untyped-def]
    def slow(*args, **kw):  # type: ignore[no-untyped-def]
        out = method(*args, **kw)
        time.sleep(0.01)  # in the store's worker thread, never on the event loop
        return out

    return slow


@pytest.fixture()
def http(tmp_path, monkeypatch) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(Store, "append", slowed(Store.append))
    monkeypatch.setattr(Store, "entries", slowed(Store.entries))
    registry = ModelRegistry([ServedModel(["toy"], Paced(ToyOptions()))])
    app = create_app(ServeSettings(store=f"sqlite:///{tmp_path / 'db.sqlite'}"), registry)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def test_a_reply_cut_at_any_moment_is_stored_once_before_the_turn_is_free(http):
    # leave after k events: 0 (before the user event is read) .. PIECES + 1 (the
    # last piece: the server is saving the whole reply); the ends most often
    leave_after = [*range(PIECES + 2), *[PIECES, PIECES + 1] * 15]
    for k, leave in enumerate(leave_after):
        name = f"c{k}"
        assert http.post("/conversations", json={"name": name}).status_code == 201
        deltas = 0
        with http.stream("POST", f"/conversations/{name}/messages", json={"content": "hi"}) as r:
            seen = 0
            for line in r.iter_lines():
                deltas += line == "event: delta"
                seen += line.startswith("event:")
                if seen > leave:
                    break
        conv = until(
            lambda n=name: (c := http.get(f"/conversations/{n}").json())["busy"] is False and c
        )
        kept = [(m["role"], m["interrupted"]) for m in conv["messages"]]
        if deltas == 0:  # nothing reached the client: the user turn may stand alone
            assert kept[:1] == [("user", False)] and len(kept) <= 2, (leave, kept)
        else:
            assert len(kept) == 2 and kept[1][0] == "assistant", (leave, deltas, kept)
            reply = conv["messages"][1]["content"]
            # what the client saw is in it; a reply short of the whole is marked cut
            assert reply.startswith("".join(f"w{i} " for i in range(deltas))), (leave, reply)
            assert kept[1][1] or reply == "".join(f"w{i} " for i in range(PIECES)), kept
