"""What people add to runs, as ``RunStore`` keeps it: tags (each member's own), notes,
diagnoses and citations."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from ..errors import StoreError
from ..record import DIAGNOSIS_SCHEMA, Diagnosis, utc_now
from .db import DbError
from .rows import SqlRows

DIAGNOSIS_LIMIT = 1 << 20  # bytes of one stored diagnosis


class AnnotationRows(SqlRows):
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

    def add_diagnosis(self, run_id: str, doc: Diagnosis) -> None:
        """A `repro diagnose` report, stored with the run it explains (at most
        ``DIAGNOSIS_LIMIT`` bytes; its shape was checked when it became a model)."""
        text = json.dumps({"schema_version": DIAGNOSIS_SCHEMA, **doc.model_dump(mode="json")})
        if doc.run != run_id or len(text) > DIAGNOSIS_LIMIT:
            raise StoreError(f"run {run_id}: a diagnosis of another run, or over "
                             f"{DIAGNOSIS_LIMIT >> 20} MiB, was not stored")
        with self.atomic() as db:
            db.execute("INSERT INTO diagnoses (run_id, created_at, user_name, doc) "
                       "VALUES (?, ?, ?, ?)", (run_id, doc.created_at, doc.user, text))

    def diagnoses(self, run_id: str) -> list[Diagnosis]:
        """The run's diagnoses, oldest first. One whose shape does not hold (a member's row
        in a team store) is left out and said (``damaged``), never shown half-read."""
        out = []
        for n, (text,) in enumerate(self.db.execute(
                "SELECT doc FROM diagnoses WHERE run_id = ? ORDER BY created_at, doc",
                (run_id,))):
            try:
                out.append(Diagnosis.model_validate_json(text))
            except ValidationError as e:
                where = ".".join(str(x) for x in e.errors()[0]["loc"]) or "its top"
                self.damaged[f"{run_id} diagnosis {n}"] = (
                    f"run {run_id}: a stored diagnosis is malformed at {where} and was left "
                    f"out; `repro diagnose {run_id}` makes a new one")
        return out

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
