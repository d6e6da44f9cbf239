"""Runs whose repro process died (SIGKILL, power loss, a crash) are found and finished.

A run is an orphan when it is ``pending``/``running`` and the process recorded as running it
(host, boot id, pid and its start time, so a reused pid does not fool us) no longer exists.
Its container (found by its ``org.repro.run`` label) is stopped and removed, the log written so
far and any outputs are kept (flagged partial), and the run is recorded ``lost`` with the
reason. Runs owned by a live process, or by another host, are left alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .engine import LABEL_FACTS_RUN, LABEL_FACTS_STORE, LABEL_RUN, LABEL_STORE, Executor
from .errors import ReproError
from .ingest import ingest
from .jobspec import remove_secrets
from .record import RunRecord, RunStatus, utc_now
from .store import Store
from .store.local import owner_alive


def orphans(store: Store) -> list[RunRecord]:
    found = []
    for rec in store.runs.unfinished():  # a run with no owner here runs on another machine
        owner = store.local.owner(rec.id)
        if owner is not None and owner_alive(owner) is False:
            found.append(rec)
    return found


def recover(store: Store, executor: Executor, on_line: Callable[[str], None] = lambda _: None,
            ) -> list[RunRecord]:
    """Finish every orphaned run as ``lost``; returns them."""
    done = []
    for rec in orphans(store):
        owner = store.local.owner(rec.id)
        who = f"pid {owner[2]} on {owner[0]}" if owner else "its process"
        stopped = False
        for job in executor.find({LABEL_RUN: rec.id}):
            if job.running:
                executor.cancel(job.id, grace_s=5)
                stopped = True
            executor.cleanup(job.id)
        previous = rec.status
        rec.status = RunStatus.LOST
        rec.reason = (f"the repro process that ran it ({who}) died; its container was "
                      f"{'stopped' if stopped else 'over'} and removed by recovery")
        rec.finished_at = utc_now()
        remove_secrets(rec.id)
        series = _keep_what_it_left(rec, store)
        try:
            store.runs.save(rec, previous=previous, steps=series)
        except ReproError:
            continue  # another process finished or recovered it first
        store.local.release(rec.id)
        shutil.rmtree(store.work_path(rec.id), ignore_errors=True)
        on_line(f"recovered run {rec.id}: lost ({who} died)")
        done.append(rec)
    return done


def remove_strays(store: Store, executor: Executor,
                  on_line: Callable[[str], None] = lambda _: None) -> list[str]:
    """Containers of this store whose run is already over (say, the engine vanished while
    the run was live, so repro recorded it lost but could not stop the container)."""
    removed = []
    for job in [*executor.find({LABEL_STORE: str(store.home)}),
                *executor.find({LABEL_FACTS_STORE: str(store.home)})]:
        run_id = job.labels.get(LABEL_RUN) or job.labels.get(LABEL_FACTS_RUN, "")
        try:
            finished = store.runs.get(run_id).status.terminal if run_id else True
        except ReproError:
            finished = True  # not a run of this store (any more)
        if finished:
            executor.cleanup(job.id)
            on_line(f"removed stray container {job.id[:12]} of run {run_id or '?'}")
            removed.append(job.id)
    return removed


def _keep_what_it_left(rec: RunRecord, store: Store) -> list[tuple[str, int, float]]:
    """Logs, outputs and metrics an orphan left into its record; returns its series."""
    log = store.log_path(rec.id)
    try:
        series = ingest(rec, store, store.work_path(rec.id), log)
        if rec.logs is not None:
            log.unlink(missing_ok=True)
        if rec.outputs:
            rec.warnings.append("outputs are partial: the run was lost")
        return series
    except Exception as e:  # what a job left must never keep a run from being finished
        why = str(e) if isinstance(e, ReproError | OSError) else f"{type(e).__name__}: {e}"
        rec.warnings.append(f"recovery could not keep everything: {why}")
        return []


def collect_garbage(store: Store, executor: Executor,
                    on_line: Callable[[str], None] = lambda _: None) -> dict[str, list[str]]:
    """`repro gc`: finish orphaned runs, remove containers of finished runs, delete temp files
    of interrupted writes and work folders of runs that are over."""
    recovered = recover(store, executor, on_line)
    strays = remove_strays(store, executor, on_line)
    stale = stale_files(store)
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    from .diffoscope import sweep_temp

    return {"recovered": [r.id for r in recovered], "stray_containers": strays,
            "removed": [str(p) for p in stale] + sweep_temp()}


def stale_files(store: Store) -> list[Path]:
    """Temp files of interrupted artifact writes, half-unpacked code snapshots and work
    folders of runs that are over."""
    from .snapshot import stale_extractions

    stale = store.artifacts.stale_temp_files() + stale_extractions(store)
    unfinished = {r.id for r in store.runs.unfinished()}
    if store.work_dir.is_dir():
        stale += [p for p in store.work_dir.iterdir() if p.name not in unfinished]
    return stale
