"""What the chat page added to the store: per-conversation sampling (migration
``m003_conversation_sampling``) and a cut reply rewritten in place when continued."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llmkit.errors import InvalidRequestError
from llmkit.memory import migrations
from llmkit.memory.store import Store


def test_an_older_database_gains_the_sampling_columns_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with monkeypatch.context() as m:  # a database as the release before this one left it
        m.setattr(migrations, "MIGRATIONS", (migrations.m001_initial,))
        Store(url).close()
    with sqlite3.connect(tmp_path / "old.db") as raw:  # its rows, as that release wrote them
        raw.execute(
            "INSERT INTO conversations (name, system, memory, created_at, updated_at) "
            "VALUES ('kept', 'Be kind.', 'buffer', '2025-01-01 00:00:00', '2025-01-01 00:00:00')"
        )
        raw.execute(
            "INSERT INTO messages (conversation_id, role, content, status, created_at) "
            "VALUES (1, 'user', 'Hi', 'complete', '2025-01-01 00:00:00')"
        )
    with Store(url) as store:
        conv = store.get("kept")
        assert (conv.system, conv.turns, conv.temperature, conv.max_tokens) == (
            "Be kind.",
            1,
            None,
            None,
        )
        conv = store.update("kept", temperature=0.2, max_tokens=64)
        assert (conv.temperature, conv.max_tokens) == (0.2, 64)
        assert store.update("kept", system=None).temperature == 0.2  # untouched when not given
        assert store.update("kept", temperature=None).temperature is None
    with sqlite3.connect(tmp_path / "old.db") as raw:
        names = [r[0] for r in raw.execute("SELECT name FROM _llmkit_migrations")]
    assert names == [fn.__name__ for fn in migrations.MIGRATIONS]
    assert "m003_conversation_sampling" in names


def test_rewrite_replaces_one_message_in_place(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.create("c")
        store.append("c", "user", "Go on")
        cut = store.append("c", "assistant", "Once upon", interrupted=True)
        done = store.rewrite("c", cut.id, "Once upon a time.", interrupted=False)
        assert (done.id, done.content, done.interrupted) == (cut.id, "Once upon a time.", False)
        assert [(e.content, e.interrupted) for e in store.entries("c")] == [
            ("Go on", False),
            ("Once upon a time.", False),
        ]
        with pytest.raises(InvalidRequestError):
            store.rewrite("c", cut.id + 100, "x", interrupted=False)
        assert store.entries("c")[-1].content == "Once upon a time."
