"""Run records in SQLite or PostgreSQL (``db.py``), one transaction per write.

The ``record`` column holds the whole ``RunRecord`` JSON, the source of truth; the other
columns are indexed projections of it for listing and querying.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import RunNotFound, StoreError
from ..record import (
    ALLOWED,
    DIAGNOSIS_SCHEMA,
    SCHEMA_VERSION,
    Diagnosis,
    RunRecord,
    RunStatus,
    read_record,
    utc_now,
)
from .db import Db, DbError, PostgresDb, SqliteDb
from .protocol import Sweep
from .query import COLUMNS as COLUMNS_BY_FIELD
from .query import Sort, Where
from .sql_query import Compiled, Cond, compile_where

DIAGNOSIS_LIMIT = 1 << 20  # bytes of one stored diagnosis


class RunStore:
    """Run records on a ``Db`` (SQLite or PostgreSQL): the same SQL, the same results."""

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

    def query_ids(self, where: Where | None = None, sort: Sort | None = None,
                  limit: int | None = None) -> list[str]:
        """Ids in sort order. The plan: when one condition is selective, drive the query from
        its index range (then sort the few matches); otherwise walk the sort key's index and
        probe each run's conditions, letting LIMIT stop the walk early."""
        compiled = compile_where(where, self.db)
        sort = sort or Sort("column", "created_at", True)
        direction = "DESC" if sort.descending else "ASC"
        driver = self._selective_condition(compiled, limit)
        if driver is not None or sort.kind == "column" or not limit:
            return self._ids_sorted_after(compiled, driver, sort, direction, limit)
        ids: list[str] = []
        cond, args = compiled.sql(fence=self.db.probe_fence)  # probes in the walk's order
        for table, key, extra in _sort_phases(sort):
            if len(ids) >= limit:
                break
            rows = self.db.execute(
                f"SELECT runs.id FROM {table} s {self.db.ordered_join} runs ON "
                f"runs.id = s.run_id "
                f"WHERE s.name = ? AND {extra} AND {cond} "
                f"ORDER BY s.{key} {direction}, s.run_id {direction} LIMIT ?",
                [sort.name, *args, limit - len(ids)])
            ids += [r[0] for r in rows]
        if len(ids) < limit:  # runs without the sort key come last, newest first
            table = "run_metrics" if sort.kind == "metrics" else "run_params"
            present = "value IS NOT NULL" if sort.kind == "metrics" else "TRUE"
            rows = self.db.execute(
                f"SELECT runs.id FROM runs WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE "
                f"run_id = runs.id AND name = ? AND {present}) AND {cond} "
                f"ORDER BY runs.created_at DESC, runs.{self.db.rowid} DESC LIMIT ?",
                [sort.name, *args, limit - len(ids)])
            ids += [r[0] for r in rows]
        return ids

    def _ids_sorted_after(self, where: Compiled, driver: Cond | None, sort: Sort,
                          direction: str, limit: int | None) -> list[str]:
        cond, args = where.sql(driver)
        join, jargs = "", []
        rowid = f"runs.{self.db.rowid}"
        if sort.kind == "column":
            col = f"runs.{COLUMNS_BY_FIELD[sort.name]}"
            order = f"{col} IS NULL, {col} {direction}, {rowid} {direction}"
            if sort.name == "created_at":  # served by its index, so LIMIT stops early
                order = f"runs.created_at {direction}, {rowid} {direction}"
        else:
            table = "run_metrics" if sort.kind == "metrics" else "run_params"
            join = f" LEFT JOIN {table} s ON s.run_id = runs.id AND s.name = ?"
            jargs = [sort.name]
            if sort.kind == "metrics":
                key = f"s.value IS NULL, s.value {direction}"
            else:  # numbers before text ascending, text first descending (SQLite's order)
                key = (f"s.run_id IS NULL, s.value_num IS NULL {direction}, "
                       f"s.value_num {direction}, s.value_text {direction}")
            order = f"{key}, runs.created_at DESC, {rowid} DESC"
        sql = f"SELECT runs.id FROM runs{join} WHERE {cond} ORDER BY {order}"
        params: list[object] = [*jargs, *args]
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [r[0] for r in self.db.execute(sql, params)]

    def _selective_condition(self, where: Compiled, limit: int | None) -> Cond | None:
        """The condition with the fewest matching rows, if few enough that driving the query
        from it beats walking an index in sort order (about sqrt(limit * runs) rows)."""
        conds = [c for c in where.conjuncts() if isinstance(c, Cond)]
        if not conds:
            return None
        total = self.db.execute(f"SELECT max({self.db.rowid}) FROM runs").fetchone()[0] or 0
        cap = max(1000, int(2 * math.sqrt((limit or total) * max(total, 1))))
        best, best_n = None, cap
        for c in conds:
            est = c.estimate_sql(cap)
            if est is None:
                continue
            n = self.db.execute(*est).fetchone()[0]
            if n < best_n:
                best, best_n = c, n
        return best

    # -- tags and notes ---------------------------------------------------------------------

    def set_tags(self, run_id: str, tags: dict[str, str], remove: Iterable[str] = ()) -> None:
        """Set and remove this member's tags (in a team store each member's tags are its
        own: another member's tag of the same key neither blocks nor is changed)."""
        with self.atomic() as db:
            db.executemany("INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?) "
                           "ON CONFLICT (run_id, key, created_by) DO UPDATE SET "
                           "value = excluded.value", ((run_id, k, v) for k, v in tags.items()))
            for k in remove:
                gone = db.execute("DELETE FROM run_tags WHERE run_id = ? AND key = ?",
                                  (run_id, k)).rowcount
                if not gone and db.execute("SELECT 1 FROM run_tags WHERE run_id = ? AND "
                                           "key = ?", (run_id, k)).fetchone():
                    raise StoreError(f"tag {k!r} of run {run_id} is another member's; only "
                                     "they can remove it")

    def tags(self, run_id: str) -> dict[str, str]:
        return self.tags_of([run_id])[run_id]

    def tags_of(self, run_ids: list[str]) -> dict[str, dict[str, str]]:
        """Each run's tags; where members set the same key, the run's author's value wins,
        then the first member's by name."""
        out: dict[str, dict[str, str]] = {i: {} for i in run_ids}
        author = "t.created_by <> r.created_by, " if self.shared else ""
        for i in range(0, len(run_ids), 500):
            chunk = run_ids[i:i + 500]
            for rid, k, v in self.db.execute(
                    f"SELECT t.run_id, t.key, t.value FROM run_tags t JOIN runs r ON "
                    f"r.id = t.run_id WHERE t.run_id IN ({', '.join('?' * len(chunk))}) "
                    f"ORDER BY t.key, {author}t.created_by", chunk):
                out[rid].setdefault(k, v)
        return out

    def add_note(self, run_id: str, text: str, at: str | None = None) -> None:
        """A note, stamped now (or ``at``: a note copied from another store keeps its time)."""
        with self.atomic() as db:
            db.execute("INSERT INTO run_notes (run_id, created_at, text) VALUES (?, ?, ?)",
                       (run_id, at or utc_now(), text))

    def notes(self, run_id: str) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT created_at, text FROM run_notes WHERE run_id = ? "
                                    "ORDER BY created_at, text", (run_id,)))

    def add_diagnosis(self, run_id: str, doc: dict[str, Any]) -> None:
        """A `repro diagnose` report, stored with the run it explains (its shape checked,
        at most ``DIAGNOSIS_LIMIT`` bytes)."""
        doc = {"schema_version": DIAGNOSIS_SCHEMA, "created_at": utc_now(), **doc}
        try:
            Diagnosis.model_validate(doc)
        except ValidationError as e:
            raise StoreError(f"run {run_id}: a malformed diagnosis was not stored "
                             f"({e.errors()[0]['loc']}: {e.errors()[0]['msg']})") from None
        text = json.dumps(doc)
        if doc["run"] != run_id or len(text) > DIAGNOSIS_LIMIT:
            raise StoreError(f"run {run_id}: a diagnosis of another run, or over "
                             f"{DIAGNOSIS_LIMIT >> 20} MiB, was not stored")
        with self.atomic() as db:
            db.execute("INSERT INTO diagnoses (run_id, created_at, user_name, doc) "
                       "VALUES (?, ?, ?, ?)", (run_id, doc["created_at"], doc.get("user"),
                                               text))

    def diagnoses(self, run_id: str) -> list[dict[str, Any]]:
        """The run's diagnoses, oldest first."""
        return [json.loads(doc) for (doc,) in self.db.execute(
            "SELECT doc FROM diagnoses WHERE run_id = ? ORDER BY created_at, doc", (run_id,))]

    # -- sweeps -------------------------------------------------------------------------------

    def add_sweep(self, sweep_id: str, name: str, spec_path: str, plan: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, ?)",
                       (sweep_id, name, spec_path, plan, utc_now()))

    def ids(self) -> list[str]:
        """Every run id, oldest first (records are not parsed: one may be damaged)."""
        return [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY created_at, id")]

    def publish(self, run_id: str, metric: str | None, value: float | None,
                cited_by: str) -> dict[str, Any]:
        """Mark a run published (`repro cite`), once: the first citation is the one kept.
        Returns the mark."""
        try:
            with self.atomic() as db:
                db.execute("INSERT INTO published (run_id, metric, value, cited_by, cited_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
                           (run_id, metric, value, cited_by, utc_now()))
        except DbError as e:
            if "row-level security" not in str(e):
                raise StoreError(f"store {self.db.where}: cannot cite run {run_id}: {e}") from e
            raise StoreError(f"run {run_id} is {self.authors([run_id]).get(run_id, 'another')}"
                             "'s: only a run's author cites it (a citation keeps the run "
                             "from ever being removed)") from None
        found = self.published(run_id)
        assert found is not None
        return found

    def published(self, run_id: str) -> dict[str, Any] | None:
        """The citation; ``cited_by`` is the store role that cited it, in a team store."""
        who = "created_by" if self.shared else "cited_by"
        row = self.db.execute(f"SELECT metric, value, {who}, cited_at FROM published WHERE "
                              "run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return {"metric": row[0], "value": row[1], "cited_by": row[2], "cited_at": row[3]}

    def published_of(self, run_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(run_ids), 500):
            chunk = run_ids[i:i + 500]
            out.update(r[0] for r in self.db.execute(
                f"SELECT run_id FROM published WHERE run_id IN ({', '.join('?' * len(chunk))})",
                chunk))
        return out

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

    def exists(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    # -- images: archives (docker save, once per image id) and registry pushes -------------------

    def image_archive(self, image_id: str) -> tuple[str, int] | None:
        row = self.db.execute("SELECT archive_sha256, size FROM images WHERE id = ?",
                              (image_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def add_image_archive_if_new(self, image_id: str, sha256: str, size: int) -> None:
        """Note an archive for an image that has none (a bundle never replaces one)."""
        with self.atomic() as db:
            db.execute("INSERT INTO images VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       (image_id, sha256, size, utc_now()))

    def add_image_archive(self, image_id: str, sha256: str, size: int) -> None:
        """Note (or renew) an image's archive; another member's row stands as it is."""
        with _theirs_stands():
            with self.atomic() as db:
                db.execute("INSERT INTO images VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                           "SET archive_sha256 = excluded.archive_sha256, size = excluded.size, "
                           "archived_at = excluded.archived_at",
                           (image_id, sha256, size, utc_now()))

    def recipe_image(self, recipe_digest: str) -> str | None:
        """The image this member built the recipe into (on PostgreSQL a member sees only its
        own rows: another member's image is taken only by the digest a run records)."""
        row = self.db.execute("SELECT image_id FROM recipe_images WHERE recipe_digest = ? "
                              "ORDER BY built_at DESC LIMIT 1", (recipe_digest,)).fetchone()
        return str(row[0]) if row else None

    def add_recipe_image(self, recipe_digest: str, image_id: str) -> None:
        with self.atomic() as db:
            db.execute("INSERT INTO recipe_images (recipe_digest, image_id, built_at) VALUES "
                       "(?, ?, ?) ON CONFLICT (recipe_digest, created_by) DO UPDATE SET "
                       "image_id = excluded.image_id, built_at = excluded.built_at",
                       (recipe_digest, image_id, utc_now()))

    def add_push(self, image_id: str, repository: str, digest: str) -> None:
        """Note a push; another member's row for the same repository stands as it is."""
        with _theirs_stands():
            with self.atomic() as db:
                db.execute("INSERT INTO image_pushes VALUES (?, ?, ?, ?) ON CONFLICT (image_id, "
                           "repository) DO UPDATE SET digest = excluded.digest, "
                           "pushed_at = excluded.pushed_at",
                           (image_id, repository, digest, utc_now()))

    def pushes(self, image_id: str) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT repository, digest FROM image_pushes WHERE "
                                    "image_id = ? ORDER BY pushed_at DESC, repository",
                                    (image_id,)))

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


@contextmanager
def _theirs_stands() -> Iterator[None]:
    """An upsert over a row another member added is refused by the database's policies
    (a member changes only its own rows): that row stands, and nothing else fails."""
    try:
        yield
    except DbError as e:
        if "row-level security" not in str(e):
            raise


STEP_UPSERT = ("INSERT INTO metric_steps VALUES (?, ?, ?, ?) ON CONFLICT (run_id, name, step) "
               "DO UPDATE SET value = excluded.value")
COLUMNS = ("id", "name", "status", "exit_code", "spec_digest", "created_at", "started_at",
           "finished_at", "duration_s", "replay_of", "sweep_id", "user_name", "host",
           "diagnosis_of", "record")


def _sort_phases(sort: Sort) -> list[tuple[str, str, str]]:
    """(table, key column, filter) walked in order for an EAV sort key: numbers, then text."""
    if sort.kind == "metrics":
        return [("run_metrics", "value", "s.value IS NOT NULL")]
    phases = [("run_params", "value_num", "s.value_num IS NOT NULL"),
              ("run_params", "value_text", "s.value_num IS NULL")]
    return phases[::-1] if sort.descending else phases  # SQLite sorts numbers before text


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
