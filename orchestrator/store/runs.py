"""Run records in SQLite or PostgreSQL (``db.py``), one transaction per write.

The ``record`` column holds the whole ``RunRecord`` JSON, the source of truth; the other
columns are indexed projections of it for listing and querying.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import RunNotFound, StoreError
from ..record import (
    ALLOWED,
    SCHEMA_VERSION,
    RunRecord,
    RunStatus,
    read_record,
    utc_now,
)
from .annotations import AnnotationRows
from .db import Db, DbError, PostgresDb, SqliteDb
from .image_index import ImageRows
from .planner import QueryPlanner
from .protocol import Sweep
from .query import Sort, Where
from .sql_query import compile_where


class RunStore(QueryPlanner, AnnotationRows, ImageRows):
    """Run records on a ``Db`` (SQLite or PostgreSQL): the same SQL, the same results. The
    query planner, annotations and the image index are its parts in their own modules."""

    def __init__(self, db: Db) -> None:
        self.db = db
        # rows a listing skipped because they do not parse, each a one-line warning (one
        # member's damaged row must not break `repro runs` or the dashboard for the team)
        self.damaged: dict[str, str] = {}
        self.path: Path | None = getattr(db, "path", None)  # SQLite's file
        self.place = str(self.path.parent) if self.path is not None else db.where

    @classmethod
    def sqlite(cls, path: Path) -> RunStore:
        return cls(SqliteDb(path))

    @classmethod
    def postgresql(cls, url: str) -> RunStore:
        return cls(PostgresDb(url))

    def close(self) -> None:
        self.db.close()

    # -- records ---------------------------------------------------------------------------

    def insert(self, record: RunRecord) -> None:
        """Record a new run."""
        try:
            with self.atomic() as db:
                db.execute(f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * len(COLUMNS))})", _row(record))
                _project(db, record)
        except DbError as e:
            raise StoreError(f"store {self.db.where}: cannot record run {record.id}: {e}") from e

    def import_run(self, record: RunRecord, steps: list[tuple[str, int, float]],
                   source: str, absent: list[str],
                   image_archive: tuple[str, str, int] | None) -> None:
        """Record a run from elsewhere (a bundle) in one transaction: the record (never owned:
        no process here runs it), its metric series, where it came from and which of its
        artifacts did not come with it, and its image's archive unless one is known."""
        try:
            with self.atomic() as db:
                db.execute(f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * len(COLUMNS))})", _row(record))
                _project(db, record)
                db.executemany(STEP_UPSERT,
                               ((record.id, n, s, v) for n, s, v in steps))
                db.execute("INSERT INTO run_imports VALUES (?, ?, ?, ?)",
                           (record.id, source, utc_now(), json.dumps(sorted(absent))))
                if image_archive is not None:
                    db.execute("INSERT INTO images VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                               (*image_archive, utc_now()))
        except DbError as e:
            raise StoreError(f"store {self.db.where}: cannot record run {record.id}: {e}") from e

    def copy_in(self, record: RunRecord, steps: Iterable[tuple[str, int, float]],
                origin: dict[str, Any] | None, sweep: Sweep | None,
                image_archive: tuple[str, str, int] | None) -> None:
        """Record a finished run copied from another store (`repro push`/`pull`), in one
        transaction: the record, its series, where it came from (a bundle's origin travels
        with its run), its sweep and its image's archive. Its tags and notes follow, each
        idempotent."""
        try:
            with self.atomic() as db:
                db.execute(f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * len(COLUMNS))})", _row(record))
                _project(db, record)
                db.executemany(STEP_UPSERT, ((record.id, n, s, v) for n, s, v in steps))
                if origin is not None:
                    db.execute("INSERT INTO run_imports VALUES (?, ?, ?, ?)",
                               (record.id, origin["source"], origin["imported_at"],
                                json.dumps(sorted(origin["absent"]))))
                if sweep is not None:
                    db.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                               sweep)
                if image_archive is not None:
                    db.execute("INSERT INTO images VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                               (*image_archive, utc_now()))
        except DbError as e:
            raise StoreError(f"store {self.db.where}: cannot record run {record.id}: {e}") from e

    def sweep(self, sweep_id: str) -> Sweep | None:
        """(id, name, spec_path, plan, created_at) of a sweep, or None."""
        row = self.db.execute("SELECT id, name, spec_path, plan, created_at FROM sweeps WHERE "
                              "id = ?", (sweep_id,)).fetchone()
        return tuple(row) if row is not None else None

    def origin(self, run_id: str) -> dict[str, Any] | None:
        """Where an imported run came from ({source, imported_at, absent}); None for a run
        recorded here."""
        row = self.db.execute("SELECT source, imported_at, absent FROM run_imports WHERE "
                              "run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return {"source": row[0], "imported_at": row[1], "absent": json.loads(row[2])}

    def imported_absent(self) -> dict[str, set[str]]:
        """run id -> the artifacts its bundle did not carry, for every imported run."""
        return {rid: set(json.loads(absent)) for rid, absent in self.db.execute(
            "SELECT run_id, absent FROM run_imports")}

    def insert_many(self, records: Iterable[RunRecord], batch: int = 1000) -> int:
        """Insert new runs in one transaction, ``batch`` records at a time into each table
        (by COPY on PostgreSQL: row by row, 100,000 runs took 4.7 times SQLite's time);
        returns how many. A run already there fails the whole insert (its id is the key)."""
        n = 0
        try:
            with self.atomic() as db:
                it = iter(records)
                while chunk := list(itertools.islice(it, batch)):
                    db.insert_rows("runs", COLUMNS, map(_row, chunk))
                    db.insert_rows("run_params", PARAM_COLUMNS,
                                   ((r.id, k, *param_values(v)) for r in chunk
                                    for k, v in r.params.items()))
                    db.insert_rows("run_metrics", METRIC_COLUMNS,
                                   ((r.id, k, v) for r in chunk for k, v in r.metrics.items()))
                    n += len(chunk)
        except DbError as e:
            raise StoreError(f"store {self.db.where}: cannot record runs: {e}") from e
        return n

    def save(self, record: RunRecord, previous: RunStatus | None = None,
             steps: Iterable[tuple[str, int, float]] = ()) -> None:
        """Write the whole record (and ``steps``, its metric series, in the same transaction).
        With ``previous``, the status must still be that one in the store (and the transition
        allowed), so two writers cannot both finish a run."""
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
                    now = db.execute("SELECT status FROM runs WHERE id = ?",
                                     (record.id,)).fetchone()
                    if now is not None and (previous is None or now[0] == str(previous)):
                        raise StoreError(f"run {record.id} may not be changed by this role: "
                                         "in a team store a member changes only its own "
                                         "unfinished runs")
                    raise StoreError(f"run {record.id} changed under us (expected status "
                                     f"{previous}); not overwritten")
                _project(db, record)
                db.executemany(STEP_UPSERT,
                               ((record.id, n, s, v) for n, s, v in steps))
        except DbError as e:
            raise StoreError(f"store {self.db.where}: cannot update run {record.id}: {e}") from e

    def get(self, ref: str) -> RunRecord:
        """A run by id or unique id prefix."""
        ref = ref.strip()
        if not ref:
            raise RunNotFound("empty run id; see `repro runs` for ids")
        rows = self.db.execute("SELECT id, record FROM runs WHERE id >= ? AND id < ? "
                               "ORDER BY id LIMIT 3", (ref, ref + "\uffff")).fetchall()
        if not rows:
            raise RunNotFound(f"no run {ref!r} in {self.place}; see `repro runs`")
        if rows[0][0] != ref and len(rows) > 1:
            ids = ", ".join(r[0] for r in rows[:2]) + (", ..." if len(rows) > 2 else "")
            raise RunNotFound(f"run id prefix {ref!r} is ambiguous ({ids}); give more of it")
        return _parse(rows[0][0], rows[0][1])

    def recent(self, limit: int | None = 50) -> list[RunRecord]:
        """Newest first (the query language is in ``query``)."""
        sql = "SELECT id, record FROM runs ORDER BY created_at DESC, id DESC"
        args: list[object] = []
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return self._readable(self.db.execute(sql, args))

    def _readable(self, rows: Iterable[tuple[str, str]]) -> list[RunRecord]:
        """The records of ``rows`` that parse; each that does not is noted in ``damaged``."""
        out = []
        for rid, doc in rows:
            try:
                out.append(_parse(rid, doc))
            except StoreError as e:
                self.damaged[rid] = f"{e}; skipped"
        return out

    def query(self, where: Where | None = None, sort: Sort | None = None,
              limit: int | None = 50, offset: int = 0) -> list[RunRecord]:
        """Runs matching a compiled --where expression, sorted (missing keys last)."""
        ids = self.query_ids(where, sort, limit + offset if limit else None)[offset:]
        found: dict[str, RunRecord] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            found.update((r.id, r) for r in self._readable(self.db.execute(
                f"SELECT id, record FROM runs WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk)))
        return [found[i] for i in ids if i in found]

    def query_count(self, where: Where) -> int:
        sql, args = compile_where(where, self.db).count_sql()
        return self.db.execute(f"SELECT count(*) FROM runs WHERE {sql}", args).fetchone()[0]

    # -- sweeps -------------------------------------------------------------------------------

    def add_sweep(self, sweep_id: str, name: str, spec_path: str, plan: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, ?)",
                       (sweep_id, name, spec_path, plan, utc_now()))

    def ids(self) -> list[str]:
        """Every run id, oldest first (records are not parsed: one may be damaged)."""
        return [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY created_at, id")]

    def remove(self, run_id: str) -> None:
        """Delete one run and everything recorded about it (params, metrics, steps, tags,
        notes, owner, origin) in one transaction. Artifacts are content-addressed and may be
        shared; they stay. A published run is never removed."""
        if self.published(run_id) is not None:
            raise StoreError(f"run {run_id} is published (cited with `repro cite`); a "
                             "published run is never removed")
        try:
            with self.atomic() as db:
                if db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount == 1:
                    return
        except DbError as e:
            raise StoreError(f"store {self.db.where}: cannot remove run {run_id[:40]}: {e}"
                             ) from e
        if not self.exists(run_id):
            raise RunNotFound(f"no run {run_id[:40]!r} in {self.place}")
        raise StoreError(f"run {run_id[:40]} is {self.authors([run_id]).get(run_id, '?')}'s, "
                         "or another member replayed it: a member removes only its own runs "
                         "no one else replayed; the store's admin removes any")

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM runs").fetchone()[0]

    def unfinished(self) -> list[RunRecord]:
        """Pending and running runs. A record that does not parse (damaged, or written by a
        newer repro) is left out: recovery must never block every command on one bad row."""
        found = []
        for rid, doc in self.db.execute(
                "SELECT id, record FROM runs WHERE status IN ('pending', 'queued', 'running')"):
            try:
                found.append(_parse(rid, doc))
            except StoreError:
                continue
        return found

    # -- metric series -----------------------------------------------------------------------

    def add_steps(self, run_id: str, points: Iterable[tuple[str, int, float]]) -> None:
        with self.atomic() as db:
            db.executemany(STEP_UPSERT,
                           ((run_id, n, s, v) for n, s, v in points))

    def steps(self, run_id: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for name, step, value in self.db.execute(
                "SELECT name, step, value FROM metric_steps WHERE run_id = ? "
                "ORDER BY name, step", (run_id,)):
            out.setdefault(name, []).append((step, value))
        return out

    def replays_of(self, run_id: str) -> list[RunRecord]:
        return self._readable(self.db.execute(
            "SELECT id, record FROM runs WHERE replay_of = ? ORDER BY created_at, id",
            (run_id,)))

    def exists(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    # -- analysis reads: portable SQL in analysis.py -----------------------------------------

    def sweep_groups(self, where: Where, metric: str | None = None, limit: int = 50,
                     offset: int = 0) -> tuple[int, list[dict[str, object]]]:
        from . import analysis

        return analysis.sweep_groups(self, where, metric, limit, offset)

    def importance_samples(self, where: Where, metric: str, at_most: int | None = None
                           ) -> tuple[list[tuple[dict[str, object], float]], int]:
        from . import analysis

        return analysis.importance_samples(self, where, metric, at_most)

    def names(self) -> dict[str, list[str]]:
        from . import analysis

        return analysis.names(self)


STEP_UPSERT = ("INSERT INTO metric_steps VALUES (?, ?, ?, ?) ON CONFLICT (run_id, name, step) "
               "DO UPDATE SET value = excluded.value")
COLUMNS = ("id", "name", "status", "exit_code", "spec_digest", "created_at", "started_at",
           "finished_at", "duration_s", "replay_of", "sweep_id", "user_name", "host",
           "diagnosis_of", "record")
PARAM_COLUMNS = ("run_id", "name", "value_num", "value_text")
METRIC_COLUMNS = ("run_id", "name", "value")


def _parse(run_id: str, doc: str) -> RunRecord:
    """A stored record as the model, read tolerantly (fields a newer repro added are left
    out); a newer record schema, or a record that does not validate, is a StoreError that
    says which, never a traceback."""
    version = re.search(r'"schema_version":\s*(\d+)', doc[:200])
    if version and int(version.group(1)) > SCHEMA_VERSION:
        raise StoreError(f"run {run_id[:40]!r} was written by a newer repro (record schema "
                         f"{version.group(1)}); upgrade repro to read it")
    try:
        record = read_record(doc)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise StoreError(f"run {run_id[:40]!r}: its stored record is damaged at {where} "
                         f"({first['msg'][:200]}); its author or the store's admin can remove "
                         f"it: `repro rm {run_id[:40]}`") from None
    if record.id != run_id:  # a row that carries another run's record
        raise StoreError(f"run {run_id[:40]!r}: its stored record is damaged at id (it says "
                         f"{record.id[:40]!r}); its author or the store's admin can remove "
                         f"it: `repro rm {run_id[:40]}`")
    return record


def _row(r: RunRecord) -> tuple[object, ...]:
    return (r.id, r.name, str(r.status), r.exit_code, r.spec_digest, r.created_at,
            r.started_at, r.finished_at, r.duration_s, r.replay_of, r.sweep_id, r.user,
            r.host, r.diagnosis_of, r.model_dump_json())


def param_value(num: float | None, text: str) -> object:
    """A param value back from its (numeric, text) columns: bool, int, float or str (lists
    and dicts come back as their text, which groups them the same way; None as None)."""
    if num is None:
        return None if text == "None" else text
    if text in ("true", "false"):
        return text == "true"
    if text.lstrip("-").isdigit():
        return int(text)
    return num


def param_values(value: object) -> tuple[float | None, str]:
    """(numeric, text) columns of one param value, as the query language compares them."""
    if isinstance(value, bool):
        return float(value), "true" if value else "false"
    if isinstance(value, int | float):
        return float(value), repr(value) if isinstance(value, float) else str(value)
    return None, str(value)


def _project(db: Db, r: RunRecord) -> None:
    """The queryable projections of a record's params and metrics (same transaction)."""
    db.execute("DELETE FROM run_params WHERE run_id = ?", (r.id,))
    db.execute("DELETE FROM run_metrics WHERE run_id = ?", (r.id,))
    db.executemany("INSERT INTO run_params VALUES (?, ?, ?, ?)",
                   ((r.id, k, *param_values(v)) for k, v in r.params.items()))
    db.executemany("INSERT INTO run_metrics VALUES (?, ?, ?)",
                   ((r.id, k, v) for k, v in r.metrics.items()))
