"""Run records in SQLite (WAL, busy timeout, one transaction per write).

The ``record`` column holds the whole ``RunRecord`` JSON, the source of truth; the other
columns are indexed projections of it for listing and querying.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import RunNotFound, StoreError
from ..query import COLUMNS as COLUMNS_BY_FIELD
from ..query import Sort
from ..record import ALLOWED, RunRecord, RunStatus, utc_now
from .migrations import LATEST, MIGRATIONS


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("PRAGMA foreign_keys = ON")
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store database {path} is unusable: {e}") from e

    def close(self) -> None:
        self.db.close()

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        current = self.db.execute("PRAGMA user_version").fetchone()[0]
        if current > LATEST:
            raise StoreError(f"store {self.path} has schema {current}, newer than this repro "
                             f"understands ({LATEST}); upgrade repro")
        if current == LATEST:
            return
        with self.atomic():
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                            "PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = self.db.execute("PRAGMA user_version").fetchone()[0]  # under the lock
            for version, name, sql in MIGRATIONS:
                if version <= current:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                (version, name, utc_now()))
                self.db.execute(f"PRAGMA user_version = {int(version)}")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE): no lock upgrades, no
        'database is locked' half-way through."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StoreError(f"store {self.path}: {e}") from e
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            try:
                self.db.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                self.db.execute("ROLLBACK")
                raise StoreError(f"store {self.path}: cannot commit: {e}") from e

    # -- records ---------------------------------------------------------------------------

    def insert(self, record: RunRecord) -> None:
        try:
            with self.atomic() as db:
                db.execute(f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * len(COLUMNS))})", _row(record))
                _project(db, record)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: cannot record run {record.id}: {e}") from e

    def insert_many(self, records: Iterable[RunRecord]) -> int:
        """Insert runs in one transaction (imports, benchmarks); returns how many."""
        n = 0
        try:
            with self.atomic() as db:
                for record in records:
                    db.execute(f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(COLUMNS))})", _row(record))
                    _project(db, record)
                    n += 1
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: cannot record runs: {e}") from e
        return n

    def save(self, record: RunRecord, previous: RunStatus | None = None) -> None:
        """Write the whole record. With ``previous``, the status must still be that one in
        the store (and the transition allowed), so two writers cannot both finish a run."""
        if previous is not None and record.status != previous:
            if record.status not in ALLOWED.get(previous, set()):
                raise StoreError(f"run {record.id}: status cannot go from {previous} to "
                                 f"{record.status}")
        row = _row(record)
        try:
            with self.atomic() as db:
                cur = db.execute(
                    f"UPDATE runs SET {', '.join(c + '=?' for c in COLUMNS[1:])} WHERE id=?"
                    + (" AND status=?" if previous else ""),
                    (*row[1:], row[0], *([str(previous)] if previous else [])))
                if cur.rowcount != 1:
                    raise StoreError(f"run {record.id} changed under us (expected status "
                                     f"{previous}); not overwritten")
                _project(db, record)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: cannot update run {record.id}: {e}") from e

    def get(self, ref: str) -> RunRecord:
        """A run by id or unique id prefix."""
        ref = ref.strip()
        if not ref:
            raise RunNotFound("empty run id; see `repro runs` for ids")
        rows = self.db.execute("SELECT id, record FROM runs WHERE id >= ? AND id < ? "
                               "ORDER BY id LIMIT 3", (ref, ref + "\uffff")).fetchall()
        if not rows:
            raise RunNotFound(f"no run {ref!r} in {self.path.parent}; see `repro runs`")
        if rows[0][0] != ref and len(rows) > 1:
            ids = ", ".join(r[0] for r in rows[:2]) + (", ..." if len(rows) > 2 else "")
            raise RunNotFound(f"run id prefix {ref!r} is ambiguous ({ids}); give more of it")
        return RunRecord.model_validate_json(rows[0][1])

    def list(self, limit: int | None = 50, name: str | None = None) -> list[RunRecord]:
        sql = "SELECT record FROM runs"
        args: list[object] = []
        if name:
            sql += " WHERE name = ?"
            args.append(name)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [RunRecord.model_validate_json(r[0]) for r in self.db.execute(sql, args)]

    def query(self, where: tuple[str, list[object]] = ("1", []), sort: Sort | None = None,
              limit: int | None = 50) -> list[RunRecord]:
        """Runs matching a compiled --where expression, sorted (missing keys last)."""
        return [RunRecord.model_validate_json(r[0])
                for r in self.db.execute(*self._query_sql("runs.record", where, sort, limit))]

    def query_count(self, where: tuple[str, list[object]]) -> int:
        return self.db.execute(f"SELECT count(*) FROM runs WHERE {where[0]}",
                               where[1]).fetchone()[0]

    def query_ids(self, where: tuple[str, list[object]], sort: Sort | None = None,
                  limit: int | None = None) -> list[str]:
        return [r[0] for r in self.db.execute(*self._query_sql("runs.id", where, sort, limit))]

    @staticmethod
    def _query_sql(what: str, where: tuple[str, list[object]], sort: Sort | None,
                   limit: int | None) -> tuple[str, list[object]]:
        sort = sort or Sort("column", "created_at", True)
        direction = "DESC" if sort.descending else "ASC"
        join, args = "", []
        if sort.kind == "column":
            key = f"runs.{COLUMNS_BY_FIELD[sort.name]}"
        elif sort.kind == "metrics":
            join, key = " LEFT JOIN run_metrics s ON s.run_id = runs.id AND s.name = ?", "s.value"
            args.append(sort.name)
        else:
            join = " LEFT JOIN run_params s ON s.run_id = runs.id AND s.name = ?"
            key = "coalesce(s.value_num, s.value_text)"
            args.append(sort.name)
        sql = (f"SELECT {what} FROM runs{join} WHERE {where[0]} ORDER BY {key} IS NULL, "
               f"{key} {direction}, runs.created_at DESC, runs.id")
        args += where[1]
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return sql, args

    # -- tags and notes ---------------------------------------------------------------------

    def set_tags(self, run_id: str, tags: dict[str, str], remove: Iterable[str] = ()) -> None:
        with self.atomic() as db:
            db.executemany("INSERT OR REPLACE INTO run_tags VALUES (?, ?, ?)",
                           ((run_id, k, v) for k, v in tags.items()))
            db.executemany("DELETE FROM run_tags WHERE run_id = ? AND key = ?",
                           ((run_id, k) for k in remove))

    def tags(self, run_id: str) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM run_tags WHERE run_id = ? "
                                    "ORDER BY key", (run_id,)))

    def tags_of(self, run_ids: list[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {i: {} for i in run_ids}
        for i in range(0, len(run_ids), 500):
            chunk = run_ids[i:i + 500]
            for rid, k, v in self.db.execute(
                    f"SELECT run_id, key, value FROM run_tags WHERE run_id IN "
                    f"({', '.join('?' * len(chunk))})", chunk):
                out[rid][k] = v
        return out

    def add_note(self, run_id: str, text: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT INTO run_notes VALUES (?, ?, ?)", (run_id, utc_now(), text))

    def notes(self, run_id: str) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT created_at, text FROM run_notes WHERE run_id = ? "
                                    "ORDER BY created_at", (run_id,)))

    # -- sweeps -------------------------------------------------------------------------------

    def add_sweep(self, sweep_id: str, name: str, spec_path: str, plan: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, ?)",
                       (sweep_id, name, spec_path, plan, utc_now()))

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM runs").fetchone()[0]

    def unfinished(self) -> list[RunRecord]:
        return [RunRecord.model_validate_json(r[0]) for r in self.db.execute(
            "SELECT record FROM runs WHERE status IN ('pending', 'running')")]

    # -- metric series -----------------------------------------------------------------------

    def add_steps(self, run_id: str, points: Iterable[tuple[str, int, float]]) -> None:
        with self.atomic() as db:
            db.executemany("INSERT OR REPLACE INTO metric_steps VALUES (?, ?, ?, ?)",
                           ((run_id, n, s, v) for n, s, v in points))

    def steps(self, run_id: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for name, step, value in self.db.execute(
                "SELECT name, step, value FROM metric_steps WHERE run_id = ? "
                "ORDER BY name, step", (run_id,)):
            out.setdefault(name, []).append((step, value))
        return out

    def replays_of(self, run_id: str) -> list[RunRecord]:
        return [RunRecord.model_validate_json(r[0]) for r in self.db.execute(
            "SELECT record FROM runs WHERE replay_of = ? ORDER BY created_at", (run_id,))]

    def exists(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    # -- images: archives (docker save, once per image id) and registry pushes -------------------

    def image_archive(self, image_id: str) -> tuple[str, int] | None:
        row = self.db.execute("SELECT archive_sha256, size FROM images WHERE id = ?",
                              (image_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def add_image_archive(self, image_id: str, sha256: str, size: int) -> None:
        with self.atomic() as db:
            db.execute("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?)",
                       (image_id, sha256, size, utc_now()))

    def add_push(self, image_id: str, repository: str, digest: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT OR REPLACE INTO image_pushes VALUES (?, ?, ?, ?)",
                       (image_id, repository, digest, utc_now()))

    def pushes(self, image_id: str) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT repository, digest FROM image_pushes WHERE "
                                    "image_id = ? ORDER BY pushed_at DESC", (image_id,)))

    # -- input hash cache (path, size, mtime, inode) -> sha256 ----------------------------------

    def cached_hash(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None:
        row = self.db.execute("SELECT sha256 FROM hash_cache WHERE path=? AND size=? AND "
                              "mtime_ns=? AND inode=?", (path, size, mtime_ns, inode)).fetchone()
        return row[0] if row else None

    def cache_hash(self, path: str, size: int, mtime_ns: int, inode: int, sha256: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT OR REPLACE INTO hash_cache VALUES (?, ?, ?, ?, ?)",
                       (path, size, mtime_ns, inode, sha256))


COLUMNS = ("id", "name", "status", "exit_code", "spec_digest", "created_at", "started_at",
           "finished_at", "duration_s", "replay_of", "sweep_id", "record")


def _row(r: RunRecord) -> tuple[object, ...]:
    return (r.id, r.name, str(r.status), r.exit_code, r.spec_digest, r.created_at,
            r.started_at, r.finished_at, r.duration_s, r.replay_of, r.sweep_id,
            r.model_dump_json())


def param_values(value: object) -> tuple[float | None, str]:
    """(numeric, text) columns of one param value, as the query language compares them."""
    if isinstance(value, bool):
        return float(value), "true" if value else "false"
    if isinstance(value, int | float):
        return float(value), repr(value) if isinstance(value, float) else str(value)
    return None, str(value)


def _project(db: sqlite3.Connection, r: RunRecord) -> None:
    """The queryable projections of a record's params and metrics (same transaction)."""
    db.execute("DELETE FROM run_params WHERE run_id = ?", (r.id,))
    db.execute("DELETE FROM run_metrics WHERE run_id = ?", (r.id,))
    db.executemany("INSERT INTO run_params VALUES (?, ?, ?, ?)",
                   ((r.id, k, *param_values(v)) for k, v in r.params.items()))
    db.executemany("INSERT INTO run_metrics VALUES (?, ?, ?)",
                   ((r.id, k, v) for k, v in r.metrics.items()))
