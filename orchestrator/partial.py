"""Partial verification: the first steps of a long run, replayed and compared (a prefix).

`repro verify RUN --steps N` replays the run and stops its job once every metric series it
recorded has reached its last point at or before step N (``StopAt``, fed the job's points as
they come: ``LiveMetrics``). Then every recorded point of steps up to N must be the same, bit
for bit, and the log up to where the replay stopped, normalised as verify normalises logs
(``verdicts.prefix_verdict``). The job did not end, so its outputs are not compared, and the
verdict (``identical-prefix``, its own exit code) says so. ``--budget`` picks the most steps
that fit in a duration, from the original's steps and duration.

Steps are the record's: the helper's ``log_metric(step=)``, else a point's position in its
series (``metrics_from_log`` numbers matches in line order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import UsageError
from .live import Latest
from .record import RunRecord

Series = dict[str, list[tuple[int, float]]]


@dataclass(frozen=True)
class Prefix:
    """What a prefix verify compares: every point at or before ``through``."""

    through: int  # the last step compared
    of_steps: int  # the original's last step
    needs: dict[str, int]  # each series: its last recorded step at or before ``through``


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


def described(prefix: Prefix, original: RunRecord) -> str:
    took = original.duration_s
    share = (prefix.through + 1) / (prefix.of_steps + 1)
    return (f"a prefix verify: steps up to {prefix.through:,} of {prefix.of_steps:,}"
            + (f" (about {share * took:.0f} s of the original's {took:.0f} s)" if took else "")
            + "; the job is stopped there and its outputs are not compared")


@dataclass
class StopAt:
    """Watches a replay's points; once every series has reached its last step of the
    prefix, stops the job (once): ``stop`` gets the job's id (``started`` gave it)."""

    prefix: Prefix
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
                if step is not None and name in self.prefix.needs:
                    self.reached[name] = max(step, self.reached.get(name, step))
            if self.fired.is_set() or self.job_id is None:
                return
            if any(self.reached.get(name, need - 1) < need
                   for name, need in self.prefix.needs.items()):
                return
            self.fired.set()
            job_id = self.job_id
        # the engine call runs off this thread (the one reading the job's output)
        threading.Thread(target=self.stop, args=(job_id,), name="prefix-stop",
                         daemon=True).start()


def through(series: list[tuple[str, int, float]] | Series, step: int) -> Series:
    """The points of ``series`` at or before ``step``, by name."""
    out: Series = {}
    if isinstance(series, dict):
        for name, pts in series.items():
            kept = [(s, v) for s, v in pts if s <= step]
            if kept:
                out[name] = kept
        return out
    for name, s, v in series:
        if s <= step:
            out.setdefault(name, []).append((s, v))
    return out
