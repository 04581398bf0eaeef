"""What ``llmkit doctor`` says of a conversation store, read without changing it:
whether it answers, how big it is, which migrations it has. Opening a ``Store``
would create and migrate it; a diagnosis must not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from llmkit.memory.migrations import MIGRATIONS, applied, conversations


@dataclass(frozen=True)
class StoreState:
    url: str  # shown without its password
    exists: bool  # False: a SQLite file not created yet
    size_bytes: int | None = None  # the SQLite file's; None elsewhere
    conversations: int = 0
    applied: tuple[str, ...] = ()  # migrations recorded in the store
    known: tuple[str, ...] = tuple(fn.__name__ for fn in MIGRATIONS)  # this llmkit's

    @property
    def pending(self) -> list[str]:
        return [n for n in self.known if n not in self.applied]

    @property
    def newer(self) -> list[str]:
        """Migrations a newer llmkit applied, that this one does not know."""
        return [n for n in self.applied if n not in self.known]


def inspect_store(url: str) -> StoreState:
    """The store at ``url`` (raises sqlalchemy's errors when it cannot be read)."""
    parsed = sa.make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    size = None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if not path.exists():
            return StoreState(url=shown, exists=False)
        size = path.stat().st_size
        parsed = sa.make_url(f"sqlite:///file:{path}?mode=ro&uri=true")
    engine = sa.create_engine(parsed)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            names: tuple[str, ...] = ()
            if applied.name in tables:
                names = tuple(conn.execute(sa.select(applied.c.name).order_by("name")).scalars())
            count = 0
            if conversations.name in tables:
                count = conn.execute(sa.select(sa.func.count()).select_from(conversations)).scalar()
    finally:
        engine.dispose()
    return StoreState(
        url=shown, exists=True, size_bytes=size, conversations=int(count or 0), applied=names
    )
