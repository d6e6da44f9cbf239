"""What every part of ``RunStore`` stands on: its database, its transactions, and whether
the store is a team's (each row written by a member's role)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .db import Db, DbError


class SqlRows:
    db: Db
    damaged: dict[str, str]  # rows a read left out, and why (said once by the CLI)

    @property
    def shared(self) -> bool:
        """A team's store: PostgreSQL, where each row records the role that wrote it."""
        return self.db.dialect == "postgresql"

    @property
    def schema_version(self) -> int:
        return self.db.schema_version()

    def atomic(self) -> Any:
        """One transaction (a savepoint inside another): writes compose, so a record and
        its metric series commit together."""
        return self.db.atomic()

    def authors(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Who wrote each run's row, as the database knows them (the role a member connects
        as): a record's ``user`` is whatever its client said. Empty for SQLite (one writer)."""
        if not self.shared:
            return {}
        ids, out = list(dict.fromkeys(run_ids)), dict[str, str]()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out.update(self.db.execute(
                f"SELECT id, created_by FROM runs WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk))
        return out


@contextmanager
def theirs_stands() -> Iterator[None]:
    """An upsert over a row another member added is refused by the database's policies
    (a member changes only its own rows): that row stands, and nothing else fails."""
    try:
        yield
    except DbError as e:
        if "row-level security" not in str(e):
            raise
