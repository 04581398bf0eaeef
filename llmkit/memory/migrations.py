"""The conversation store's schema, and how a database gets there.

Schema changes are an append-only list of named migration functions, in the
style of llm's ``llm/migrations.py``: each runs once per database, inside the
same transaction that records its name in ``_llmkit_migrations``, so a crash
half-way through a migration leaves nothing half-applied. A migration that has
shipped is never edited: a later change is a new function at the end of
``MIGRATIONS``. Each migration therefore declares the tables as they were at
its time, and ``conversations`` / ``messages`` below describe the schema as the
whole list leaves it, for the store's queries (never for creating tables).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no time zones: values are stored as naive UTC text (which sorts
    in time order) and read back with ``tzinfo=UTC``; PostgreSQL keeps them in a
    ``timestamp with time zone``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the conversation store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- the schema as the migrations below leave it (queries only) --------------------------

schema = sa.MetaData()

conversations = sa.Table(
    "conversations",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("model", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("system", sa.Text),
    sa.Column("memory", sa.Text, nullable=False, server_default="buffer"),
    sa.Column("summary", sa.Text),
    sa.Column("summary_upto", sa.Integer),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # m003_conversation_sampling: the chat page's per-conversation settings (None: the server's)
    sa.Column("temperature", sa.Float),
    sa.Column("max_tokens", sa.Integer),
)

messages = sa.Table(
    "messages",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "conversation_id",
        sa.Integer,
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="complete"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # m005_message_reasoning: an assistant turn's thinking, apart from its answer
    sa.Column("reasoning", sa.Text),
    # m008_message_tool_calls: an assistant turn's calls of MCP tools (JSON: the calls,
    # each with its server, and the servers the turn could use); a tool result's call
    sa.Column("tool_calls", sa.Text),
    sa.Column("tool_call_id", sa.Text),
)

# LangGraph checkpoints (``memory/checkpoints.py``): values are the saver's serde
# output, a type tag plus bytes, opaque to the store.
checkpoints = sa.Table(
    "langgraph_checkpoints",
    schema,
    sa.Column("thread_id", sa.Text, primary_key=True),
    sa.Column("checkpoint_ns", sa.Text, primary_key=True),
    sa.Column("checkpoint_id", sa.Text, primary_key=True),
    sa.Column("parent_id", sa.Text),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("checkpoint", sa.LargeBinary, nullable=False),
    sa.Column("metadata_type", sa.String(32), nullable=False),
    sa.Column("metadata", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

checkpoint_writes = sa.Table(
    "langgraph_writes",
    schema,
    sa.Column("thread_id", sa.Text, primary_key=True),
    sa.Column("checkpoint_ns", sa.Text, primary_key=True),
    sa.Column("checkpoint_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("task_path", sa.Text, nullable=False, server_default=""),
)

# A stored answer of OpenAI's Responses API (``memory/responses.py``): one turn of
# its conversation, its parent turn (``previous_id``) and what the turn added.
responses = sa.Table(
    "responses",
    schema,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "conversation_id",
        sa.Integer,
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("previous_id", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("input_json", sa.Text, nullable=False),
    sa.Column("response_json", sa.Text, nullable=False),
    sa.Column("messages_json", sa.Text, nullable=False),
    sa.Column("first_message_id", sa.Integer),
    sa.Column("last_message_id", sa.Integer),
)

applied = sa.Table(
    "_llmkit_migrations",
    sa.MetaData(),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)


# -- migrations: append only; never edit one that has been applied -----------------------

Migration = Callable[[Connection], None]


def m001_initial(conn: Connection) -> None:
    meta = sa.MetaData()
    sa.Table(
        "conversations",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("model", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("system", sa.Text),
        sa.Column("memory", sa.Text, nullable=False, server_default="buffer"),
        sa.Column("summary", sa.Text),
        # id of the newest message folded into ``summary``
        sa.Column("summary_upto", sa.Integer),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "messages",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "conversation_id",
            sa.Integer,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        # 'complete' or 'interrupted' (Ctrl-C, the server died, the network dropped)
        sa.Column("status", sa.String(16), nullable=False, server_default="complete"),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Index("ix_messages_conversation", "conversation_id", "id"),
        # AUTOINCREMENT: ids of deleted messages (/retry) are never handed out again,
        # so a summary's ``summary_upto`` can't come to cover a newer message.
        sqlite_autoincrement=True,
    )
    meta.create_all(conn)


def m002_langgraph_checkpoints(conn: Connection) -> None:
    """LangGraph's checkpoints and pending writes (``LlmkitCheckpointer``), beside
    the conversations: one database, so a checkpoint and its thread's mirrored
    conversation are written in one transaction."""
    meta = sa.MetaData()
    sa.Table(
        "langgraph_checkpoints",
        meta,
        sa.Column("thread_id", sa.Text, primary_key=True),
        sa.Column("checkpoint_ns", sa.Text, primary_key=True),
        # uuid6 strings: they sort in creation order, so "latest" is the greatest id
        sa.Column("checkpoint_id", sa.Text, primary_key=True),
        sa.Column("parent_id", sa.Text),
        # the serde's type tag ("msgpack", "json", ...) beside its bytes
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("checkpoint", sa.LargeBinary, nullable=False),
        sa.Column("metadata_type", sa.String(32), nullable=False),
        sa.Column("metadata", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "langgraph_writes",
        meta,
        sa.Column("thread_id", sa.Text, primary_key=True),
        sa.Column("checkpoint_ns", sa.Text, primary_key=True),
        sa.Column("checkpoint_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        # the write's place in its task's list; negative for LangGraph's special
        # writes (error, interrupt, resume...), which replace instead of adding
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("task_path", sa.Text, nullable=False, server_default=""),
    )
    meta.create_all(conn)


def m003_conversation_sampling(conn: Connection) -> None:
    """The sampling a conversation asks for (the chat page sets it per conversation)."""
    conn.execute(sa.text("ALTER TABLE conversations ADD COLUMN temperature FLOAT"))
    conn.execute(sa.text("ALTER TABLE conversations ADD COLUMN max_tokens INTEGER"))


def m004_responses(conn: Connection) -> None:
    """The Responses API's turns. Self-contained: it names only ``conversations``.

    ``previous_id`` has no foreign key: a parent may be evicted or deleted while
    its children stay (their history then starts where it is still known).
    ``first/last_message_id``: the transcript rows (``messages``) the turn wrote,
    removed with it."""
    meta = sa.MetaData()
    sa.Table("conversations", meta, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "responses",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "conversation_id",
            sa.Integer,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("previous_id", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("input_json", sa.Text, nullable=False),
        sa.Column("response_json", sa.Text, nullable=False),
        # the core messages the turn added to its history: its input, then its output
        sa.Column("messages_json", sa.Text, nullable=False),
        sa.Column("first_message_id", sa.Integer),
        sa.Column("last_message_id", sa.Integer),
        sa.Index("ix_responses_conversation", "conversation_id"),
        sa.Index("ix_responses_created", "created_at"),
    )
    meta.tables["responses"].create(conn)


def m005_message_reasoning(conn: Connection) -> None:
    """A reasoning model's thinking, kept beside the answer (``content``), never in
    it; NULL for every turn before it and every turn without thinking."""
    conn.execute(sa.text("ALTER TABLE messages ADD COLUMN reasoning TEXT"))


def m008_message_tool_calls(conn: Connection) -> None:
    """Tool calls and their results as conversation messages: an assistant turn's
    calls (JSON) and, on a ``tool`` message, the id of the call it answers. NULL on
    every message before it and every message that is neither."""
    conn.execute(sa.text("ALTER TABLE messages ADD COLUMN tool_calls TEXT"))
    conn.execute(sa.text("ALTER TABLE messages ADD COLUMN tool_call_id TEXT"))


MIGRATIONS: tuple[Migration, ...] = (
    m001_initial,
    m002_langgraph_checkpoints,
    m003_conversation_sampling,
    m004_responses,
    m005_message_reasoning,
    m008_message_tool_calls,
    # append new migrations here
)


def migrate(conn: Connection) -> list[str]:
    """Apply the pending migrations in the caller's transaction; return their names.

    The caller holds a write transaction (SQLite ``BEGIN IMMEDIATE``), so two
    processes opening a new database at once apply each migration exactly once.
    """
    if conn.dialect.name == "postgresql":
        # CREATE TABLE IF NOT EXISTS is not race-free on PostgreSQL; serialise openers.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7126351)"))
    applied.create(conn, checkfirst=True)
    done = set(conn.execute(sa.select(applied.c.name)).scalars())
    names = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        fn(conn)
        conn.execute(applied.insert().values(name=fn.__name__, applied_at=datetime.now(UTC)))
        names.append(fn.__name__)
    return names
