"""Why a run does not reproduce, and by how much: `repro diagnose RUN`.

Modelled on reprotest (Reproducible Builds), which builds twice with every variation it
knows applied, then lets one go at a time. Here the variations are the ones that move the
bits of ML jobs, and each experiment is an ordinary replay recorded in the store (its
verdict against the original, its warnings naming the experiment):

1. **plain**: K replays as recorded. Identical to the original and to each other: nothing
   to diagnose.
2. **controlled**: two replays with every control that applies on: the wall clock frozen at
   the recorded start, Python's ``random``/numpy/torch seeded, ``PYTHONHASHSEED`` fixed, one
   thread, torch's deterministic algorithms. What still differs between these two is
   beyond repro's controls: OS entropy, a race, something read from outside.
3. **released, one factor at a time**: a controlled replay with that one control off (as
   recorded). A place in a file (a line, a JSON path, an array element) that differs from
   the controlled replay where the controlled pair agree moves with that factor.
4. **threads again**, when threads are implicated: a second replay at the recorded thread
   count. Differing again means threads race; agreeing means the result depends on the
   count alone.

Controls already in force (``determinism: strict`` seeds and fixes the hash seed; a
one-CPU run has one thread) are not experiments. Each differing output ends as one
sentence naming its causes and where in the file each shows, and the fix to try. The
diagnosis is stored with the run (``RunStore.add_diagnosis``) and shown on its page.

The reasoning (``analyse``, the factors, comparing runs by place) is ``causes.py``'s,
pure and unit-tested without an engine; this module runs the experiments.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .causes import (
    BY_NAME,
    FACTORS,
    OUTCOME,
    Differences,
    Factor,
    Runs,
    analyse,
    broken_control,
    differences,
)
from .engine import Engine
from .errors import ExitCode, ReproError, UsageError
from .record import Diagnosis, ResolvedSpec, RunRecord, RunStatus, utc_now
from .resolve import THREAD_VARS, Redactor
from .runner import Hooks, sigterm_as_sigint
from .store import Store

if TYPE_CHECKING:
    from .replay import Grants


class DiagnosisInterrupted(ReproError):
    exit_code = ExitCode.INTERRUPTED


def applicable(record: RunRecord) -> tuple[list[Factor], dict[str, str]]:
    """The factors worth an experiment for ``record``, and why each other one is not."""
    r = record.resolved
    strict = r.determinism == "strict"
    skipped: dict[str, str] = {}
    if strict:
        skipped["seeds"] = "already forced: the run was recorded with determinism: strict"
    hashseed = r.env.get("PYTHONHASHSEED")
    if hashseed not in (None, "random"):
        skipped["hashseed"] = f"already fixed: PYTHONHASHSEED={hashseed}"
    if r.resources.threads <= 1 and r.resources.cpus <= 1:
        skipped["threads"] = "the run already used one thread (cpus 1)"
    if not r.resources.gpus:
        skipped["gpu"] = "the run uses no GPU"
    elif strict:
        skipped["gpu"] = "already forced: the run was recorded with determinism: strict"
    return [f for f in FACTORS if f.name not in skipped], skipped


def controlled(r: ResolvedSpec, names: Iterable[str], at: float) -> ResolvedSpec:
    """``r`` with the controls ``names`` on (what runs; the record keeps it)."""
    env = dict(r.env)
    update: dict[str, Any] = {}
    for name in names:
        if name == "clock":
            env["REPRO_FROZEN_CLOCK"] = f"{at:.3f}"
        elif name == "seeds":
            env["REPRO_FORCE_SEEDS"] = "1"
        elif name == "hashseed":
            env["PYTHONHASHSEED"] = str(r.seed)
        elif name == "threads":
            env.update({v: "1" for v in THREAD_VARS})
            update["resources"] = r.resources.model_copy(update={"cpus": 1.0, "threads": 1})
        elif name == "gpu":
            env.update(REPRO_TORCH_DETERMINISTIC="1", CUBLAS_WORKSPACE_CONFIG=":4096:8")
        else:
            raise ValueError(f"unknown factor {name!r}")
    return r.model_copy(update={"env": env, **update})


# -- running the experiments ------------------------------------------------------------------

@dataclass
class Lab:
    original: RunRecord
    store: Store
    engine: Engine
    say: Callable[[str], None]
    grants: Grants | None = None
    at: float = 0.0
    runs: list[dict[str, Any]] = field(default_factory=list)
    side_by_side: int = 1  # independent replays run at once (``side_by_side``)
    # a store connection and an engine client for a worker thread (None: one at a time)
    opener: Callable[[], tuple[Store, Engine]] | None = None

    def replay(self, names: list[str], label: str, experiment: str) -> RunRecord:
        return self.replays([(names, label, experiment)])[0]

    def replays(self, wanted: list[tuple[list[str], str, str]]) -> list[RunRecord]:
        """Independent experiments ``(controls, label, experiment)``, up to ``side_by_side``
        at once, each in a worker thread with its own store connection and engine client
        (a sweep's way); recorded in ``runs`` in the order given."""
        first = len(self.runs) + 1
        width = min(self.side_by_side, len(wanted)) if self.opener is not None else 1
        if width <= 1:
            done = [self._one(first + i, *w, self.store, self.engine, Hooks())
                    for i, w in enumerate(wanted)]
        else:
            done = self._side_by_side(first, wanted, width)
        self.runs += [entry for _, entry in done]
        return [rec for rec, _ in done]

    def _side_by_side(self, first: int, wanted: list[tuple[list[str], str, str]],
                      width: int) -> list[tuple[RunRecord, dict[str, Any]]]:
        assert self.opener is not None
        opener, cancel = self.opener, threading.Event()
        jobs: set[str] = set()  # started on the engine: stopped on Ctrl-C

        def one(i: int, w: tuple[list[str], str, str]) -> tuple[RunRecord, dict[str, Any]]:
            store, engine = opener()

            def started(job_id: str) -> None:
                jobs.add(job_id)
                if cancel.is_set():  # started as Ctrl-C came: stopped at once
                    _quietly_cancel(engine, job_id)

            try:
                return self._one(first + i, *w, store, engine,
                                 Hooks(cancel=cancel, on_start=started))
            finally:
                store.close()

        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="diagnose") as pool, \
                sigterm_as_sigint():
            futures = [pool.submit(one, i, w) for i, w in enumerate(wanted)]
            try:
                while not all(f.done() for f in futures):
                    wait(futures, timeout=0.5)
            except KeyboardInterrupt:
                cancel.set()
                for f in futures:
                    f.cancel()  # not started yet: never starts
                for job in list(jobs):
                    _quietly_cancel(self.engine, job)
                wait(futures)
                raise DiagnosisInterrupted(f"diagnosis of run {self.original.id} "
                                           "interrupted; nothing was stored") from None
            return [f.result() for f in futures]

    def _one(self, n: int, names: list[str], label: str, experiment: str, store: Store,
             engine: Engine, hooks: Hooks) -> tuple[RunRecord, dict[str, Any]]:
        from .replay import replay

        self.say(f"[{n}] {label} ...")
        began = time.monotonic()
        rec = replay(self.original, store, engine, hooks, grants=self.grants,
                     vary=(lambda r: controlled(r, names, self.at)) if names else None,
                     note=f"repro diagnose {self.original.id}: {label}",
                     diagnosis_of=self.original.id)
        took = time.monotonic() - began
        if rec.status == RunStatus.INTERRUPTED:
            raise DiagnosisInterrupted(f"diagnosis of run {self.original.id} interrupted "
                                       f"during {label} (run {rec.id}); nothing was stored")
        result = (rec.verdict.result if rec.verdict else "differs")
        self.say(f"[{n}] {label}: run {rec.id} {rec.status}, {result} vs the original")
        return rec, {"run": rec.id, "experiment": experiment, "label": label,
                     "controls": list(names), "status": str(rec.status),
                     "versus_original": result, "seconds": round(took, 2)}


def _quietly_cancel(engine: Engine, job_id: str) -> None:
    try:
        engine.cancel(job_id, 5)
    except ReproError:
        pass


def side_by_side(record: RunRecord, most: int | None = None) -> int:
    """How many replays of ``record`` run at once here: as many as this host's CPUs hold at
    the run's ``cpus`` (whole cores: the runner pins them) and its memory holds at the run's
    memory; one for a run with GPUs (each replay selects its own); ``most`` (-j) caps it."""
    res = record.resolved.resources
    cores = len(os.sched_getaffinity(0))
    fit = cores // max(1, math.ceil(res.cpus))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        fit = min(fit, memory // max(1, res.memory_bytes))
    except (OSError, ValueError):
        pass
    if res.gpus:
        fit = 1
    return max(1, min(fit, most) if most else fit)


def _experiments(lab: Lab, runs: Runs, factors: list[Factor],
                 diff: Differences) -> list[dict[str, Any]]:
    """Every control on (twice), each off in turn, the recorded threads once more when they
    are implicated: the replays go into ``runs``, the experiments are returned."""
    original, names = lab.original, [f.name for f in factors]
    experiments: list[dict[str, Any]] = []
    runs.controls = names
    on = ", ".join(BY_NAME[n].control for n in names)
    # the pair and every factor let go are independent of each other: run side by side
    released = lab.replays([(names, f"all controls on ({i + 1} of 2)", "controlled")
                            for i in range(2)]
                           + [([n for n in names if n != f.name],
                               f"{f.cause} free, every other control on", f"free:{f.name}")
                              for f in factors])
    runs.pair = released[:2]
    controlled = {"name": "controlled", "title": f"every control on: {on}",
                  "controls": names, "runs": [r.id for r in runs.pair],
                  "agree": None if broken_control(runs) else not diff(*runs.pair)}
    experiments.append(controlled)
    ran = (runs.plain[0].status, runs.plain[0].exit_code)
    for f, rec in zip(factors, released[2:], strict=True):
        rest = [n for n in names if n != f.name]
        runs.released[f.name] = rec
        experiments.append({"name": f"free:{f.name}", "factor": f.name,
                            "title": f"{f.cause} free ({f.free}), every other control on",
                            "controls": rest, "runs": [rec.id],
                            "failed": None if (rec.status, rec.exit_code) == ran else
                            f"{rec.status} (exit {rec.exit_code})" + (
                                f": {rec.reason}" if rec.reason else "")})
    broken = broken_control(runs)  # which control broke it shows once each was let go
    if broken is not None:
        controlled["failed"] = broken["line"]
    implicated = any(c["cause"] == "threads" for f in analyse(original, runs, diff)[
        "findings"] for c in f.get("causes", []))
    if implicated:
        rest = [n for n in names if n != "threads"]
        runs.threads_again = lab.replay(rest, "the recorded threads again", "threads-again")
        experiments.append({"name": "threads-again", "factor": "threads",
                            "title": "the recorded thread count again: a race or the "
                                     "count", "controls": rest,
                            "runs": [runs.threads_again.id]})
    return experiments


def started_epoch(record: RunRecord) -> float:
    stamp = record.started_at or record.created_at
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def diagnose(original: RunRecord, store: Store, engine: Engine, say: Callable[[str], None],
             replays: int = 2, grants: Grants | None = None, at_once: int = 1,
             opener: Callable[[], tuple[Store, Engine]] | None = None) -> Diagnosis:
    """Run the experiments for ``original`` and store the diagnosis with it: independent
    replays ``at_once`` at a time, each worker with what ``opener`` gives it."""
    from .replay import redacted

    if original.replay_of:
        raise UsageError(f"run {original.id} is a replay of {original.replay_of}: diagnose "
                         "the original run")
    if not original.status.terminal:
        raise UsageError(f"run {original.id} is {original.status}: diagnose it once it ends")
    began = time.monotonic()
    factors, skipped = applicable(original)
    names = [f.name for f in factors]
    lab = Lab(original, store, engine, say, grants, started_epoch(original),
              side_by_side=at_once, opener=opener)
    diff = differences(store.artifacts.local_path, original)
    runs = Runs(plain=lab.replays([([], f"plain replay {i + 1} of {replays}", "plain")
                                   for i in range(replays)]))
    first = analyse(original, runs, diff)["findings"]
    plural = "s" if replays > 1 else ""
    experiments: list[dict[str, Any]] = [{"name": "plain", "title": f"{replays} plain replay"
                                          f"{plural}", "runs": [r.id for r in runs.plain]}]
    trouble = [f for f in first if f["subject"] != OUTCOME]
    if trouble and not any(f["subject"] == OUTCOME for f in first) and names:
        experiments += _experiments(lab, runs, factors, diff)
    analysis = analyse(original, runs, diff)
    findings = analysis["findings"]
    first = runs.plain[0].verdict if runs.plain else None
    environment = first.environment if first is not None else []
    result = ("reproduces" if not findings else "fails" if any(
        f["subject"] == OUTCOME for f in findings) else "nondeterministic" if any(
        f["causes"] for f in findings) else "inconclusive" if any(
        f.get("kind") == "inconclusive" for f in findings) else "nondeterministic" if any(
        f["noise_here"] for f in findings) else "changed")
    total = time.monotonic() - began
    one = sum(r["seconds"] for r in lab.runs[:replays]) / max(1, len(lab.runs[:replays]))
    doc: dict[str, Any] = {
        "run": original.id, "result": result, "created_at": utc_now(),
        "host": runs.plain[0].host if runs.plain else None,
        "user": runs.plain[0].user if runs.plain else None,
        "replays": replays, "experiments": experiments, "runs": lab.runs,
        "skipped": skipped, "causes": analysis["causes"], "findings": findings,
        "environment": [{**c.model_dump(mode="json"), "shown": c.described} for c in environment],
        "cost": {"replays": len(lab.runs), "seconds": round(total, 2),
                 "one_replay_s": round(one, 2),
                 "multiple": round(total / one, 2) if one else None},
    }
    # the secrets its replays were given, out of every line it quotes of what jobs wrote
    wanted = {*original.resolved.secrets, *(grants.secrets if grants else ())}
    doc = redacted(doc, Redactor([os.environ[n] for n in sorted(wanted) if n in os.environ]))
    diagnosis = Diagnosis.model_validate(doc)
    store.runs.add_diagnosis(original.id, diagnosis)
    return diagnosis

