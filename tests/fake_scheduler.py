"""A scheduler that is one module, for tests/integration/test_scheduler.py: registered in
``scheduler.SCHEDULERS`` under "fake", it proves a new scheduler needs nothing else. Its
"cluster" ends each run as it is followed (succeeded, a line of log), and cancels by
recording the run interrupted. It keeps what it was asked, for the test to read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.record import RunRecord, RunStatus, utc_now
from orchestrator.store import Store

TITLE = "Fake"
SUBMITS = True
asked: list[tuple[str, Any]] = []


def options(flags: dict[str, Any]) -> dict[str, Any]:
    return {"queue": flags.get("partition") or "default"}


def require_shared_store() -> None:
    asked.append(("require_shared_store", None))


def render(record: RunRecord, store: Store, opts: dict[str, Any]) -> tuple[str, Any]:
    return f"fake job for run {record.id} on {opts['queue']}\n", {"run": record.id, **opts}


def submit(record: RunRecord, store: Store, opts: dict[str, Any],
           on_line: Callable[[str], None]) -> RunRecord:
    asked.append(("submit", record.id))
    record.executor = {**(record.executor or {}), "kind": "fake", "job_id": "7", **opts}
    store.runs.insert(record)
    record.status = RunStatus.QUEUED
    store.runs.save(record, previous=RunStatus.PENDING)
    on_line(f"run {record.id} queued as fake job 7")
    return record


def follow(store: Store, record: RunRecord, on_line: Callable[[str], None],
           on_log: Callable[[bytes], None]) -> RunRecord:
    asked.append(("follow", record.id))
    record = store.runs.get(record.id)
    record.status, record.started_at = RunStatus.RUNNING, utc_now()
    store.runs.save(record, previous=RunStatus.QUEUED)
    on_log(b"ran on the fake cluster\n")
    record.status, record.exit_code, record.finished_at = RunStatus.SUCCEEDED, 0, utc_now()
    store.runs.save(record, previous=RunStatus.RUNNING)
    return record


def reconcile(store: Store, record: RunRecord) -> RunRecord:
    return store.runs.get(record.id)


def cancel(store: Store, records: list[RunRecord]) -> list[RunRecord]:
    asked.append(("cancel", [r.id for r in records]))
    out = []
    for record in records:
        record.status, record.finished_at = RunStatus.INTERRUPTED, utc_now()
        record.reason = "cancelled on the fake cluster"
        store.runs.save(record, previous=RunStatus.QUEUED)
        out.append(store.runs.get(record.id))
    return out
