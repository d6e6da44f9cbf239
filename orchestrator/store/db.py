"""The two databases a record store runs on, behind one small connection interface.

``RunStore`` (runs.py) writes portable SQL: ``?`` placeholders, ``INSERT ... ON CONFLICT``,
``TRUE``, and the few dialect differences as attributes of the connection (``rowid``, the
``like`` operator, whether a unary ``+`` keeps an index out of a plan). Each class here owns
its connection, its schema migrations and its transactions:

- ``SqliteDb``: the embedded default, a file in WAL mode (one writer at a time, a busy
  timeout, ``BEGIN IMMEDIATE`` so no lock upgrade fails half-way, savepoints when nested).
- ``PostgresDb``: a team's server over psycopg 3, many writers on many machines. Autocommit
  outside ``atomic()`` (no idle transaction holds locks); ``atomic()`` is psycopg's
  transaction block (a savepoint when nested). Errors are one line naming host and database;
  the password never appears in one.

Both raise ``DbError`` (a StoreError) for anything the database refuses.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from ..errors import StoreError, UsageError
from ..record import utc_now


class DbError(StoreError):
    """The database refused or failed a statement."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    dialect: str  # "sqlite" or "postgresql"
    where: str  # what messages call it: a path, or host:port/database
    rowid: str  # a column that orders runs by insertion
    like: str  # case-insensitive LIKE
    plus_hides_index: bool  # SQLite: "+col" keeps the column's index out of a plan
    ordered_join: str  # a join the planner keeps in the written order (SQLite: CROSS JOIN)
    probe_fence: str  # ends a subquery the planner must not flatten (PostgreSQL: OFFSET 0)

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Any) -> None: ...

    # new rows into a table in bulk (inside a transaction); on PostgreSQL by COPY
    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Any]) -> None: ...

    def atomic(self) -> Any: ...  # a context manager: one transaction (nested: a savepoint)

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


@contextmanager
def setup_lock(db_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<db>.lock`` for the store's one-time set-up."""
    try:
        fd = os.open(f"{db_path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot lock store database {db_path}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- SQLite ------------------------------------------------------------------------------------


class SqliteDb:
    dialect = "sqlite"
    rowid = "rowid"
    like = "LIKE"  # case-insensitive for ASCII in SQLite
    plus_hides_index = True
    ordered_join = "CROSS JOIN"
    probe_fence = ""  # SQLite keeps a correlated EXISTS a per-row probe

    def __init__(self, path: Path) -> None:
        from .migrations import LATEST

        self.path = path
        self.where = str(path)
        self._depth = 0
        try:
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 30000")
            self.conn.execute("PRAGMA foreign_keys = ON")
            ready = (self.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                     and self.schema_version() == LATEST)
            if not ready:
                # Switching to WAL takes an exclusive lock and SQLite answers "database is
                # locked" at once, without waiting, when another process opens the same new
                # store at that moment. One process at a time sets the store up.
                with setup_lock(path):
                    if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        self.conn.execute("PRAGMA journal_mode = WAL")
                    self._migrate()
            self.conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store database {path} is unusable: {e}") from e

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        from .migrations import LATEST, MIGRATIONS

        current = self.schema_version()
        if current > LATEST:
            raise StoreError(f"store {self.path} has schema {current}, newer than this repro "
                             f"understands ({LATEST}); upgrade repro")
        if current == LATEST:
            return
        with self.atomic():
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                              "PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = self.schema_version()  # under the lock
            for version, name, sql in MIGRATIONS:
                if version <= current:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    self.conn.execute(statement)
                self.conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                  (version, name, utc_now()))
                self.conn.execute(f"PRAGMA user_version = {int(version)}")

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor:
        try:
            return self.conn.execute(sql, args)
        except sqlite3.DatabaseError as e:
            raise DbError(f"store {self.path}: {e}") from e

    def executemany(self, sql: str, rows: Any) -> None:
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.DatabaseError as e:
            raise DbError(f"store {self.path}: {e}") from e

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Any]) -> None:
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                         f"({', '.join('?' * len(columns))})", rows)

    @contextmanager
    def atomic(self) -> Iterator[SqliteDb]:
        """A write transaction taken up front (BEGIN IMMEDIATE): no lock upgrades, no
        'database is locked' half-way through. Inside another one it is a SAVEPOINT, so
        writes compose (a record and its metric series commit together)."""
        if self.conn.in_transaction:
            with self._savepoint():
                yield self
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise DbError(f"store {self.path}: {e}") from e
        try:
            yield self
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                self._rollback()
                raise DbError(f"store {self.path}: cannot commit: {e}") from e

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._depth += 1
        name = f"sp{self._depth}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self.conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    def _rollback(self) -> None:
        """Roll back if SQLite has not already (it does by itself on a full disk)."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


# -- PostgreSQL --------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and records)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def without_password(url: str) -> str:
    """``url`` without its password (libpq then reads ~/.pgpass)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1@", url)


class PostgresDb:
    dialect = "postgresql"
    rowid = "seq"
    like = "ILIKE"
    plus_hides_index = False
    ordered_join = "JOIN"
    probe_fence = " OFFSET 0"

    def __init__(self, url: str) -> None:
        import psycopg

        parsed = urlparse(url)
        host = parsed.hostname or "localhost"
        db = unquote(parsed.path.lstrip("/")) or unquote(parsed.username or "")
        self.where = f"{host}:{parsed.port or 5432}/{db}"
        self.url = url
        try:
            # the URL goes to libpq as is: PGPASSWORD, ~/.pgpass and service files work
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10,
                                        application_name="repro")
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to the record store at {self.where} (REPRO_STORE): "
                             f"{_pg_reason(e, url)}") from None
        except Exception as e:  # a malformed URL: libpq's own parser says why
            raise UsageError(f"REPRO_STORE {safe_url(url)}: {_pg_reason(e, url)}") from None
        self._migrate()

    def schema_version(self) -> int:
        row = self.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not row[0]:
            return 0
        found = self.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        return int(found or 0)

    def _migrate(self) -> None:
        from .migrations import LATEST

        if self.schema_version() == LATEST:
            return
        try:
            self._upgrade()
        except DbError as e:
            if "permission denied" in str(e) or "must be owner" in str(e):
                raise StoreError(f"the record store at {self.where} needs its schema set up or "
                                 f"upgraded to version {LATEST}, which only the role that "
                                 "owns it may do: run any repro command once as that role "
                                 "(the team's admin)") from None
            raise

    def _upgrade(self) -> None:
        from .migrations import LATEST
        from .pg_schema import BASELINE, BASELINE_VERSION, PG_MIGRATIONS

        with self.atomic():
            # one set-up at a time across every machine: a transaction-scoped advisory lock
            self.execute("SELECT pg_advisory_xact_lock(7041991)")
            current = self.schema_version()
            if current > LATEST:
                raise StoreError(f"record store {self.where} has schema {current}, newer "
                                 f"than this repro understands ({LATEST}); upgrade repro")
            if current == 0:
                for statement in filter(str.strip, BASELINE.split(";")):
                    self.execute(statement)
                self.executemany("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                 [(v, n, utc_now()) for v, n in BASELINE_VERSION])
                current = BASELINE_VERSION[-1][0]
            for version, name, sql in PG_MIGRATIONS:
                if version <= current:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    self.execute(statement)
                self.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                             (version, name, utc_now()))

    @staticmethod
    def _sql(sql: str) -> str:
        # psycopg's placeholders are %s; a literal % must be doubled. No SQL of ours has a
        # ? inside a string literal.
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor:
        import psycopg

        try:
            return self.conn.execute(self._sql(sql), list(args))
        except psycopg.Error as e:
            raise DbError(f"record store {self.where}: {_pg_reason(e, self.url)}") from None

    def executemany(self, sql: str, rows: Any) -> None:
        import psycopg

        try:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), [list(r) for r in rows])
        except psycopg.Error as e:
            raise DbError(f"record store {self.where}: {_pg_reason(e, self.url)}") from None

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Any]) -> None:
        """By COPY: one stream for all the rows (pipelined INSERTs took twice as long). A
        member of a team store, subject to row-level security, may not COPY into its
        tables (PostgreSQL refuses COPY FROM under RLS): its rows go as INSERTs, which the
        policies check."""
        import psycopg

        rows = list(rows)
        cols = ", ".join(columns)
        try:
            with self.conn.transaction(), self.conn.cursor() as cur, \
                    cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        except psycopg.errors.FeatureNotSupported:
            pass  # row-level security: as INSERTs below
        except psycopg.Error as e:
            raise DbError(f"record store {self.where}: {_pg_reason(e, self.url)}") from None
        self.executemany(f"INSERT INTO {table} ({cols}) VALUES "
                         f"({', '.join('?' * len(columns))})", rows)

    @contextmanager
    def atomic(self) -> Iterator[PostgresDb]:
        import psycopg

        try:
            with self.conn.transaction():
                yield self
        except psycopg.Error as e:
            raise DbError(f"record store {self.where}: {_pg_reason(e, self.url)}") from None

    def close(self) -> None:
        self.conn.close()


def _pg_reason(e: BaseException, url: str) -> str:
    """The first line of what libpq or the server said, without the password; a refusal by
    the team's rules says what those rules are."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "row-level security" in text or "permission denied for table" in text:
        text = ("not allowed: a member adds runs, tags and notes, and changes only its own "
                f"unfinished runs and its own tags ({text})")
    password = urlparse(url).password
    if password:
        text = text.replace(password, "***").replace(unquote(password), "***")
    return text
