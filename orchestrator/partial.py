"""Partial verification: the first steps of a long run, replayed and compared (a prefix).

`repro verify RUN --steps N` replays the run and stops its job once every metric series it
recorded has reached its last point at or before step N (``StopAt``, fed the job's points as
they come: ``LiveMetrics``). Then every recorded point of steps up to N must be the same, bit
for bit, and the log up to where the replay stopped, normalised as verify normalises logs
(``verdicts.prefix_verdict``). The job did not end, so its outputs are not compared, and the
verdict (``identical-prefix``, its own exit code) says so. ``--budget`` picks the most steps
that fit in a duration, from the original's steps and duration.

`repro verify RUN --segment K` checks one stretch of the run from its checkpoints instead: a
spec's ``resume`` says where the job writes checkpoints (``checkpoints/step_{step}.pt``) and
how it resumes from one (``--resume {path}``). The replay starts from the recorded checkpoint
of step K, placed in its working folder, runs until it has written the next recorded
checkpoint (and gone past its step), and that checkpoint must be the same bit for bit
(content-aware: the tensors that differ are named), with every point of the steps between
(``verdicts.segment_verdict``, ``identical-segment``). ``--segment random`` draws one with a
seed it prints, so CI samples another each night and a failure can be drawn again.

Steps are the record's: the helper's ``log_metric(step=)``, a ``step`` group of a
``metrics_from_log`` regex, else a point's position in its series.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .live import Latest
from .record import ResolvedSpec, RunRecord

Series = dict[str, list[tuple[int, float]]]


@dataclass(frozen=True)
class Prefix:
    """What a prefix verify compares: every point at or before ``through``."""

    through: int  # the last step compared
    of_steps: int  # the original's last step
    needs: dict[str, int]  # each series: its last recorded step at or before ``through``

    def ready_in(self, _folder: Path) -> Callable[[dict[str, int]], bool]:
        """When the job may stop: every series has reached its last step of the prefix."""
        return lambda reached: all(reached.get(name, need - 1) >= need
                                   for name, need in self.needs.items())

    def described(self, original: RunRecord) -> str:
        took = original.duration_s
        share = (self.through + 1) / (self.of_steps + 1)
        return (f"a prefix verify: steps up to {self.through:,} of {self.of_steps:,}"
                + (f" (about {share * took:.0f} s of the original's {took:.0f} s)" if took
                   else "") + "; the job is stopped there and its outputs are not compared")


def plan(original: RunRecord, series: Series, steps: int | None = None,
         budget_s: float | None = None) -> Prefix | None:
    """The prefix ``--steps`` or ``--budget`` asks of ``original``; None when it covers the
    whole run (a full verify). UsageError when the run has no steps to stop at."""
    points = [step for pts in series.values() for step, _ in pts]
    if not points:
        raise UsageError(f"run {original.id} recorded no metric series: a prefix verify stops "
                         "the job at a step, so the job must log its steps (repro.log_metric("
                         "name, value, step=...) or metrics_from_log in the spec)")
    first, of_steps = min(points), max(points)
    if budget_s is not None:
        took = original.duration_s
        if not took:
            raise UsageError(f"run {original.id} has no recorded duration to fit --budget "
                             "to; give --steps instead")
        steps = first + int((of_steps - first) * budget_s / took)
    assert steps is not None
    if steps >= of_steps:
        return None
    if steps < first:
        raise UsageError(f"run {original.id}: no point at or before step {steps} (its first "
                         f"is step {first}); ask for more steps"
                         + (" or a larger --budget" if budget_s is not None else ""))
    needs = {name: max(s for s, _ in pts if s <= steps) for name, pts in series.items()
             if any(s <= steps for s, _ in pts)}
    return Prefix(through=steps, of_steps=of_steps, needs=needs)


@dataclass
class StopAt:
    """Watches a replay's points; once ``ready`` holds for the last step each series has
    reached, stops the job (once): ``stop`` gets the job's id (``started`` gave it)."""

    ready: Callable[[dict[str, int]], bool]
    stop: Callable[[str], None]
    reached: dict[str, int] = field(default_factory=dict)
    fired: threading.Event = field(default_factory=threading.Event)
    job_id: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, job_id: str) -> None:
        self.job_id = job_id

    def points(self, found: Latest) -> None:
        with self.lock:
            for name, (step, _value) in found.items():
                if step is not None and (name in self.reached or len(self.reached) < 1024):
                    self.reached[name] = max(step, self.reached.get(name, step))
            if self.fired.is_set() or self.job_id is None or not self.ready(self.reached):
                return
            self.fired.set()
            job_id = self.job_id
        # the engine call runs off this thread (the one reading the job's output)
        threading.Thread(target=self.stop, args=(job_id,), name="partial-stop",
                         daemon=True).start()


@dataclass(frozen=True)
class Segment:
    """What a segment verify runs and compares: from the checkpoint of step ``start`` to
    the next one the run recorded, of step ``end``."""

    start: int
    end: int
    start_path: str
    end_path: str
    of_steps: int

    def ready_in(self, folder: Path) -> Callable[[dict[str, int]], bool]:
        """When the job may stop: the next checkpoint is written and a series went past its
        step (a checkpoint is written before the steps after it are logged)."""
        done = folder / self.end_path
        return lambda reached: (any(step > self.end for step in reached.values())
                                and done.is_file())

    def described(self, original: RunRecord) -> str:
        return (f"a segment verify: from the checkpoint of step {self.start:,} "
                f"({self.start_path}) to the next, of step {self.end:,} ({self.end_path}), "
                f"of {self.of_steps:,} steps; the job is stopped there")

    def resumed(self, resolved: ResolvedSpec) -> ResolvedSpec:
        """The replay's spec: the recorded command, resuming from the first checkpoint."""
        assert resolved.resume is not None
        args = [a.replace("{path}", self.start_path).replace("{step}", str(self.start))
                for a in resolved.resume.args]
        return resolved.model_copy(update={"command": [*resolved.command, *args]})


def checkpoints(record: RunRecord) -> list[tuple[int, str]]:
    """(step, path) of each output the spec's ``resume.checkpoints`` names, by step."""
    resume = record.resolved.resume
    if resume is None or resume.checkpoints.count("{step}") != 1:  # a record from elsewhere
        return []  # is not checked as a spec is: a pattern without one step names none
    head, tail = resume.checkpoints.split("{step}")
    rx = re.compile(re.escape(head) + "([0-9]{1,18})" + re.escape(tail))
    # a record from elsewhere names what it likes: only a path inside the working folder
    inside = [p for p in record.outputs if not p.startswith("/") and ".." not in p.split("/")]
    return sorted((int(m[1]), path) for path in inside if (m := rx.fullmatch(path)))


def plan_segment(original: RunRecord, series: Series, which: str
                 ) -> tuple[Segment, int | None]:
    """The segment ``--segment`` asks for (a checkpoint's step, ``random`` or
    ``random:SEED``), and the seed it was drawn with."""
    resume = original.resolved.resume
    if resume is None:
        raise UsageError(f"run {original.id}: its spec says no `resume:` (where the job writes "
                         "checkpoints and how it resumes from one), so no segment can start; "
                         "add it and launch again")
    if original.resolved.layout != "project":
        raise UsageError(f"run {original.id} ran in the old outputs layout: a segment needs "
                         "the job's working folder; launch it again")
    points = checkpoints(original)
    pairs = list(zip(points, points[1:], strict=False))
    if not pairs:
        raise UsageError(f"run {original.id} recorded {len(points)} checkpoint(s) matching "
                         f"{resume.checkpoints!r}: a segment runs from one to the next, so "
                         "it needs two")
    seed = None
    if which == "random" or which.startswith("random:"):
        raw = which.partition(":")[2]
        if raw and not (raw.isascii() and raw.isdigit()):
            raise UsageError(f"--segment {which}: expected random or random:SEED (a number)")
        seed = int(raw) if raw else secrets.randbelow(2**31)
        first, second = random.Random(seed).choice(pairs)
    else:
        steps = [a[0] for a, _ in pairs]
        if not which.isascii() or not which.isdigit() or int(which) not in steps:
            raise UsageError(f"--segment {which}: run {original.id} has a segment from the "
                             f"checkpoint of each of steps {', '.join(map(str, steps[:20]))}"
                             f"{' ...' if len(steps) > 20 else ''}; or say random")
        first, second = pairs[steps.index(int(which))]
    last = max([s for pts in series.values() for s, _ in pts] + [points[-1][0]])
    return Segment(first[0], second[0], first[1], second[1], last), seed
