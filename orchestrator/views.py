"""The JSON shapes of repro's documents (the record as `show --json` prints it, the flat row
of `runs --json/--csv`), shared by the CLI and the dashboard, which never import the
terminal renderer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .record import Diagnosis, RunRecord


def record_json(record: RunRecord, series: dict[str, list[tuple[int, float]]],
                replays: Sequence[RunRecord] = (), tags: dict[str, str] | None = None,
                notes: Sequence[tuple[str, str]] = (),
                image_pushes: Sequence[tuple[str, str]] = (),
                published: dict[str, Any] | None = None,
                diagnoses: Sequence[Diagnosis] = (),
                authors: dict[str, str] | None = None) -> dict[str, Any]:
    """The record plus its metric series, tags, notes, the replays made of it, where its
    image can be pulled by digest, its citation, its diagnoses (`repro diagnose`), and in a
    team store the role that wrote each row (``recorded_by``: ``user`` is what a client
    said)."""
    authors = authors or {}
    doc = record.model_dump(mode="json")
    doc["recorded_by"] = authors.get(record.id)
    doc["series"] = {name: [[s, v] for s, v in pts] for name, pts in series.items()}
    doc["replays"] = [{"id": r.id, "status": str(r.status), "created_at": r.created_at,
                       "verdict": (r.verdict.result if r.verdict else None),
                       "through_step": r.verdict.through_step if r.verdict else None,
                       "recorded_by": authors.get(r.id)} for r in replays]
    doc["verified"] = verifications(replays, authors)
    if record.resolved.resume is not None:  # the checkpoints a segment verify starts from
        from .partial import checkpoints

        doc["checkpoints"] = [{"step": step, "path": path}
                              for step, path in checkpoints(record)]
    doc["tags"] = dict(tags or {})
    doc["notes"] = [{"at": at, "text": text} for at, text in notes]
    doc["image_pushes"] = [f"{repo}@{digest}" for repo, digest in image_pushes]
    doc["published"] = published
    doc["diagnoses"] = [d.model_dump(mode="json") for d in diagnoses]
    return doc


PASSED = ("identical", "within-tolerance", "identical-prefix", "identical-segment")


def verifications(replays: Sequence[RunRecord], authors: dict[str, str]) -> list[dict]:
    """The verifications a run has passed, oldest first: each replay whose verdict held, its
    kind (``full``, or ``prefix`` through a step), who made it (the store role that wrote its
    row, where the store knows it) and when."""
    out = []
    for r in replays:
        v = r.verdict
        if v is None or v.result not in PASSED:
            continue
        kind = ("full" if v.through_step is None else "prefix" if v.from_step is None
                else "segment")
        out.append({"kind": kind, "result": v.result, "from_step": v.from_step,
                    "through_step": v.through_step, "of_steps": v.of_steps, "replay": r.id,
                    "by": authors.get(r.id, r.user), "at": v.checked_at or r.finished_at})
    return out


def described_verification(v: dict) -> str:
    """One passed verification in words (`repro cite`, the dashboard's wording)."""
    what = ("full" if v["kind"] == "full" else
            f"prefix through step {v['through_step']:,} of {v['of_steps']:,}"
            if v["kind"] == "prefix" else
            f"segment from step {v['from_step']:,} to {v['through_step']:,} of "
            f"{v['of_steps']:,}")
    return f"{what} ({v['result']}, replay {v['replay']} by {v['by']}, {v['at']})"


def flat_row(r: RunRecord, tags: dict[str, str], published: bool = False,
             recorded_by: str | None = None) -> dict[str, Any]:
    """One run as a flat row (params.X, metrics.X, tags.X) for pandas and spreadsheets;
    ``recorded_by``: the store role that wrote it (a team store), ``user`` what its client
    said."""
    row: dict[str, Any] = {
        "id": r.id, "name": r.name, "status": str(r.status), "exit_code": r.exit_code,
        "published": published,
        "created_at": r.created_at, "duration_s": r.duration_s, "sweep": r.sweep_id,
        "user": r.user, "recorded_by": recorded_by, "host": r.host,
        "replay_of": r.replay_of, "diagnosis_of": r.diagnosis_of,
        "verdict": (r.verdict.result if r.verdict else None),
        "spec_digest": r.spec_digest, "image": r.resolved.image.digest,
        "commit": r.resolved.code.commit, "seed": r.resolved.seed}
    row.update({f"params.{k}": v for k, v in sorted(r.params.items())})
    row.update({f"metrics.{k}": v for k, v in sorted(r.metrics.items())})
    row.update({f"tags.{k}": v for k, v in sorted(tags.items())})
    return row
