"""`repro sweep`: many ordinary recorded runs of one spec over a grid (or a random sample of
it), sharing a sweep id, optionally in parallel. One failing point never stops the others.

``plan`` is pure (grid -> points); ``launch`` runs them where a sweep goes: here
(``run_sweep``, up to ``parallel`` at once) or as one array of jobs on a scheduler that has
arrays (``submit_sweep``: the ``ArrayScheduler`` capability, Slurm's ``--array``).
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import scheduler
from .engine import LABEL_SWEEP, Engine, connect
from .errors import ReproError, UsageError
from .params import apply_overrides
from .record import RunRecord, RunStatus
from .resolve import resolve
from .runner import Hooks, sigterm_as_sigint
from .runner import launch as launch_run
from .spec import LoadedSpec
from .store import Store, open_store


def parse_grid(loaded: LoadedSpec, items: list[str]) -> dict[str, list[Any]]:
    """``--grid lr=0.1,0.01`` -> {"lr": [0.1, 0.01]}, each value of the param's declared type."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not name or not values:
            raise UsageError(f"--grid {item!r}: expected NAME=V1,V2,...")
        if name in grid:
            raise UsageError(f"--grid {name}: given twice; list all its values in one --grid")
        grid[name] = [apply_overrides(loaded, [f"{name}={v}"]).spec.params[name]
                      for v in values]
    return grid


def plan(grid: dict[str, list[Any]], sample: int | None = None,
         seed: int = 0) -> list[dict[str, Any]]:
    """Every combination of the grid, or ``sample`` of them drawn without replacement."""
    names = list(grid)
    points = [dict(zip(names, combo, strict=True))
              for combo in itertools.product(*(grid[n] for n in names))]
    if sample is not None and sample < len(points):
        points = random.Random(seed).sample(points, sample)
    return points


@dataclass
class PointResult:
    index: int
    params: dict[str, Any]
    record: RunRecord | None = None
    error: str | None = None


@dataclass
class SweepResult:
    id: str
    points: list[PointResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[PointResult]:
        return [p for p in self.points
                if p.record is None or p.record.status != RunStatus.SUCCEEDED]


def run_sweep(loaded: LoadedSpec, points: list[dict[str, Any]], home: Path, *,
              parallel: int = 1, allow_dirty: bool = False, strict: bool = False,
              on_line: Callable[[str], None] = lambda _: None,
              on_done: Callable[[PointResult], None] = lambda _: None,
              plan_doc: dict[str, Any] | None = None,
              engines: Callable[[], Engine] = connect) -> SweepResult:
    """Launch every point (``parallel`` at a time, an engine client and a store connection
    per thread); Ctrl-C or SIGTERM cancels the running points and starts no more."""
    sweep_id = secrets.token_hex(6)
    store = open_store(home)
    engine = engines()
    # resolve once up front: builds/archives the image, snapshots the code, hashes inputs,
    # so the parallel points only find everything cached (and a bad spec fails before any run)
    resolve(loaded, store, engine, allow_dirty=allow_dirty, strict=strict, on_line=on_line)
    store.runs.add_sweep(sweep_id, loaded.spec.name, str(loaded.path.resolve()),
                         json.dumps({**(plan_doc or {}), "points": points}, sort_keys=True))
    result = SweepResult(id=sweep_id, points=[PointResult(i, p) for i, p in enumerate(points)])
    cancel = threading.Event()

    def one(point: PointResult) -> PointResult:
        if cancel.is_set():
            point.error = "not started: the sweep was interrupted"
            return point
        local = open_store(home)  # a connection per thread
        try:
            spec = apply_overrides(loaded, [f"{k}={_text(v)}" for k, v in point.params.items()])
            point.record = launch_run(spec, local, engines(), allow_dirty=allow_dirty,
                                  strict=strict, sweep_id=sweep_id,
                                  hooks=Hooks(on_line=lambda _: None, cancel=cancel))
        except ReproError as e:
            point.error = str(e)
        finally:
            local.close()
        return point

    with ThreadPoolExecutor(max_workers=max(1, parallel),
                            thread_name_prefix=f"sweep-{sweep_id}") as pool, sigterm_as_sigint():
        pending: set[Future[PointResult]] = {pool.submit(one, p) for p in result.points}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    on_done(f.result())
        except KeyboardInterrupt:
            cancel.set()
            result.interrupted = True
            on_line(f"interrupted: stopping the running points of sweep {sweep_id}")
            for job in engine.find({LABEL_SWEEP: sweep_id}):
                engine.cancel(job.id, grace_s=5)
            for f in pending:
                on_done(f.result())
    return result


def launch(loaded: LoadedSpec, points: list[dict[str, Any]], where: scheduler.Where,
           home: Path, opened: Callable[[], Store], *, parallel: int = 1,
           allow_dirty: bool = False, strict: bool = False, detach: bool = False,
           on_line: Callable[[str], None] = lambda _: None,
           on_done: Callable[[PointResult], None] = lambda _: None,
           plan_doc: dict[str, Any] | None = None) -> SweepResult:
    """The sweep where ``where`` says: here, or as one array of jobs on its scheduler
    (followed to the end unless ``detach``)."""
    if where.here:
        return run_sweep(loaded, points, home, parallel=parallel, allow_dirty=allow_dirty,
                         strict=strict, on_line=on_line, on_done=on_done, plan_doc=plan_doc)
    name = str(where.scheduler)
    sched = scheduler.arrays(name)
    if sched is None:
        able = [n for n in scheduler.SCHEDULERS if scheduler.arrays(n) is not None]
        raise UsageError(f"--executor {name}: a sweep runs here or on {' or '.join(able)}")
    sched.require_shared_store()
    options = sched.options(where.flags)
    return submit_sweep(loaded, points, opened(), sched, name, options,
                        parallel=parallel, allow_dirty=allow_dirty, strict=strict,
                        detach=detach, on_line=on_line, on_done=on_done, plan_doc=plan_doc)


def submit_sweep(loaded: LoadedSpec, points: list[dict[str, Any]], store: Store,
                 sched: scheduler.ArrayScheduler, name: str, options: Any, *,
                 parallel: int = 1, allow_dirty: bool = False, strict: bool = False,
                 detach: bool = False, on_line: Callable[[str], None] = lambda _: None,
                 on_done: Callable[[PointResult], None] = lambda _: None,
                 plan_doc: dict[str, Any] | None = None) -> SweepResult:
    """The sweep as one array of jobs: every point resolved here into an ordinary record
    sharing the sweep id, submitted together, followed until each ends (unless
    ``detach``)."""
    from .runner import prepare_launch

    sweep_id = secrets.token_hex(6)
    engine = connect()
    hooks = Hooks(on_line=lambda _: None)
    resolve(loaded, store, engine, allow_dirty=allow_dirty, strict=strict, on_line=on_line)
    store.runs.add_sweep(sweep_id, loaded.spec.name, str(loaded.path.resolve()),
                         json.dumps({**(plan_doc or {}), "points": points,
                                     "executor": name}, sort_keys=True))
    result = SweepResult(id=sweep_id, points=[PointResult(i, p) for i, p in enumerate(points)])
    records = []
    for point in result.points:
        spec = apply_overrides(loaded, [f"{k}={_text(v)}" for k, v in point.params.items()])
        record, _ = prepare_launch(spec, store, engine, allow_dirty=allow_dirty, strict=strict,
                                   hooks=hooks, sweep_id=sweep_id, local_gpus=False)
        records.append(record)
    sched.submit_array(records, store, options, parallel, on_line)
    by_id = {r.id: p for r, p in zip(records, result.points, strict=True)}
    if detach:
        for r, p in zip(records, result.points, strict=True):
            p.record = store.runs.get(r.id)
        return result

    def done(record: RunRecord) -> None:
        by_id[record.id].record = record
        on_done(by_id[record.id])

    try:
        sched.follow_all(store, records, done)
    except KeyboardInterrupt:
        result.interrupted = True
        on_line(f"sweep {sweep_id} goes on in {sched.TITLE}: `repro runs --where \"sweep = "
                f"{sweep_id}\"` shows it, `repro cancel --sweep {sweep_id}` stops it")
    return result


def rank(points: list[PointResult], metric: str | None, minimize: bool) -> list[dict[str, Any]]:
    """The points as summary rows, best first by ``metric`` (failed ones and those without
    it last), numbered."""
    rows: list[dict[str, Any]] = []
    for p in points:
        r = p.record
        rows.append({"id": r.id if r else None, "status": str(r.status) if r else "error",
                     "reason": (r.reason if r else p.error), "params": p.params,
                     "metrics": r.metrics if r else {}})
    if metric:
        def key(row: dict[str, Any]) -> tuple[int, float]:
            v = row["metrics"].get(metric)
            ok = row["status"] == "succeeded" and v is not None
            return (0 if ok else 1, (v if minimize else -v) if ok else 0.0)
        rows.sort(key=key)
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows




def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)
