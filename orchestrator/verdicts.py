"""Whether a replay reproduced its original: pure comparisons of two records (outputs by
sha256, metrics exactly or within tolerance, logs once normalised, the environment's facts,
where metric series part ways). ``replay.py`` runs the replay; this module only judges it,
so it is tested on records without an engine."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from . import facts
from .content import annotate
from .outputs import pair_renamed
from .record import (
    EnvChange,
    HostFacts,
    LogDifference,
    LogsVerdict,
    MetricDelta,
    Outcome,
    OutputDiff,
    OutputsVerdict,
    Renamed,
    Result,
    RunRecord,
    SeriesPart,
    Verdict,
    utc_now,
)
from .store import Store
from .tolerances import metric_tolerances, output_tolerance, within

IDENTICAL: Final = "identical"
DIFFERS: Final = "differs"
WITHIN_TOLERANCE: Final = "within-tolerance"
NOTHING_COMPARED: Final = "nothing-compared"
IDENTICAL_PREFIX: Final = "identical-prefix"
IDENTICAL_SEGMENT: Final = "identical-segment"
LOG_COMPARE_LIMIT = 64 << 20  # bytes of each log read to compare them


def verdict(original: RunRecord, replay: RunRecord,
            tolerances: dict[str, float] | None = None,
            logs: LogsVerdict | None = None) -> Verdict:
    """Did ``replay`` reproduce ``original``? What the spec compares (``compare``: outputs,
    metrics, and the output stream as ``logs``, compared by ``compare_logs``) must agree:
    every output's sha256, every metric exactly (or within its tolerance: never called
    identical), the logs once normalised. A replay with nothing to compare is
    ``nothing-compared``, never identical."""
    tolerances = tolerances or {}
    what = set(original.resolved.compare)
    a = original.outputs if "outputs" in what else {}
    b = replay.outputs if "outputs" in what else {}
    differ = [OutputDiff(path=p, original=a[p], replay=b[p])
              for p in sorted(set(a) & set(b)) if a[p].sha256 != b[p].sha256]
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    # names that carry the time or the host: each paired with the one new name like it
    pairs = pair_renamed(missing, extra)
    renamed = [Renamed(original=x, replay=y) for x, y in pairs.items()
               if a[x].sha256 == b[y].sha256]
    differ += [OutputDiff(path=x, renamed=y, original=a[x], replay=b[y])
               for x, y in pairs.items() if a[x].sha256 != b[y].sha256]
    missing = [p for p in missing if p not in pairs]
    extra = [p for p in extra if p not in pairs.values()]
    metrics = []
    metrics_ok = metrics_exact = True
    names = set(original.metrics) | set(replay.metrics) if "metrics" in what else set()
    for name in sorted(names):
        x, y = original.metrics.get(name), replay.metrics.get(name)
        tol = tolerances.get(name, 0.0)
        delta = None if x is None or y is None else y - x
        ok = delta is not None and abs(delta) <= tol
        metrics_ok &= ok
        metrics_exact &= delta == 0
        metrics.append(MetricDelta(name=name, original=x, replay=y, delta=delta,
                                   tolerance=tolerances.get(name), ok=ok))
    same_outcome = (replay.status == original.status
                    and replay.exit_code == original.exit_code)
    logs_same = logs is None or logs.identical
    result: Result
    if not same_outcome:
        result = DIFFERS
    elif not a and not b and not names and logs is None:
        result = NOTHING_COMPARED
    elif not differ and not missing and not extra and metrics_exact and logs_same:
        result = IDENTICAL
    elif metric_tolerances(tolerances) and metrics_ok and not missing and not extra and \
            logs_same:  # outputs' own tolerances: ``settle``
        result = WITHIN_TOLERANCE
    else:
        result = DIFFERS
    return Verdict(
        result=result, original=original.id, replay=replay.id,
        outcome=None if same_outcome else Outcome(
            original=f"{original.status} (exit {original.exit_code})",
            replay=f"{replay.status} (exit {replay.exit_code})" + (
                f": {replay.reason}" if replay.reason else "")),
        outputs=OutputsVerdict(identical=sorted(p for p in set(a) & set(b)
                                                if a[p].sha256 == b[p].sha256),
                               renamed=renamed, differ=differ, missing=missing, extra=extra),
        metrics=metrics, logs=logs, compared=sorted(what), tolerances=tolerances,
        environment=environment_changes(original, replay), checked_at=utc_now())


def compare_logs(original: RunRecord, replay: RunRecord, store: Store,
                 prefix: bool = False) -> LogsVerdict | None:
    """The two runs' output streams compared line by line, after the spec's ``log_normalize``
    patterns (multi-line: ^ and $ match at each line) are removed from both (timestamps,
    durations); None when the spec does not compare logs. ``prefix``: the replay was
    stopped, so its lines are compared with as many of the original's, its last (perhaps
    cut short) only as the start of the original's."""
    if "logs" not in original.resolved.compare:
        return None
    patterns = [re.compile(p, re.MULTILINE) for p in original.resolved.log_normalize]

    def lines(record: RunRecord) -> list[str] | None:
        if record.logs is None or not store.artifacts.has(record.logs.sha256):
            return None
        with store.artifacts.open(record.logs.sha256) as f:
            text = f.read(LOG_COMPARE_LIMIT).decode("utf-8", "replace")
        for p in patterns:
            text = p.sub("", text)
        return text.splitlines()

    a, b = lines(original), lines(replay)
    normalized = original.resolved.log_normalize
    if a is None or b is None:
        return LogsVerdict(normalized=normalized, identical=False,
                           missing="original" if a is None else "replay")
    if prefix and b and len(b) <= len(a) and a[len(b) - 1].startswith(b[-1]):
        a = a[:len(b) - 1] + [b[-1]]
    if a == b:
        return LogsVerdict(normalized=normalized, identical=True, lines=len(a))
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a),
                                                                                   len(b)))
    return LogsVerdict(normalized=normalized, identical=False, lines=len(a),
                       first_difference=LogDifference(
                           line=n + 1, original=a[n][:300] if n < len(a) else None,
                           replay=b[n][:300] if n < len(b) else None))


def prefix_verdict(original: RunRecord, replay: RunRecord, through: int, of_steps: int,
                   original_series: dict[str, list[tuple[int, float]]],
                   replay_series: list[tuple[str, int, float]],
                   logs: LogsVerdict | None) -> Verdict:
    """A replay stopped after step ``through`` (``partial.py``): every recorded point up to
    it, in every series, must be the same bit for bit (a series one run lacks differs), and
    the log up to where the replay stopped. Outputs are not compared: ``identical-prefix``
    says only that the steps run agree."""
    parted, metrics = _window(original_series, replay_series, None, through)
    same = not parted and (logs is None or logs.identical)
    return Verdict(result=IDENTICAL_PREFIX if same else DIFFERS, original=original.id,
                   replay=replay.id, metrics=metrics, logs=logs,
                   compared=["metrics"] + (["logs"] if logs is not None else []),
                   series=parted, environment=environment_changes(original, replay),
                   checked_at=utc_now(), through_step=through, of_steps=of_steps)


def segment_verdict(original: RunRecord, replay: RunRecord, start: int, end: int,
                    checkpoint: str, of_steps: int,
                    original_series: dict[str, list[tuple[int, float]]],
                    replay_series: list[tuple[str, int, float]]) -> Verdict:
    """A replay resumed from the checkpoint of step ``start`` and stopped once it wrote the
    one of step ``end`` (``partial.py``): that checkpoint must be the same bit for bit
    (``settle`` then names the tensors that differ), and every point of the steps after
    ``start`` up to ``end``. The job's log is not compared: a resumed job prints its own."""
    parted, metrics = _window(original_series, replay_series, start, end)
    a, b = original.outputs[checkpoint], replay.outputs.get(checkpoint)
    outputs = OutputsVerdict(
        identical=[checkpoint] if b is not None and a.sha256 == b.sha256 else [],
        differ=[OutputDiff(path=checkpoint, original=a, replay=b)]
        if b is not None and a.sha256 != b.sha256 else [],
        missing=[checkpoint] if b is None else [])
    same = not parted and bool(outputs.identical)
    return Verdict(result=IDENTICAL_SEGMENT if same else DIFFERS, original=original.id,
                   replay=replay.id, outputs=outputs, metrics=metrics,
                   compared=["checkpoint", "metrics"], series=parted,
                   environment=environment_changes(original, replay), checked_at=utc_now(),
                   from_step=start, through_step=end, of_steps=of_steps)


def _window(original_series: dict[str, list[tuple[int, float]]],
            replay_series: list[tuple[str, int, float]], after: int | None, through: int
            ) -> tuple[dict[str, SeriesPart], list[MetricDelta]]:
    """The two runs' points of the steps after ``after`` (None: from the first) up to
    ``through``, compared bit for bit: where each series parts ways (a series one run lacks
    parts at its first step), and each series' last point."""
    def inside(step: int) -> bool:
        return (after is None or step > after) and step <= through

    theirs = {n: kept for n, pts in original_series.items()
              if (kept := [(s, v) for s, v in pts if inside(s)])}
    mine = [(n, s, v) for n, s, v in replay_series if inside(s)]
    parted = series_divergence(theirs, mine)
    ours: dict[str, dict[int, float]] = {}
    for n, s, v in mine:
        ours.setdefault(n, {})[s] = v
    for name in sorted(set(theirs) ^ set(ours)):  # a series only one run logged
        a, b = dict(theirs.get(name, [])), ours.get(name, {})
        step = min(a or b)
        parted[name] = SeriesPart(step=step, original=a.get(step), replay=b.get(step),
                                  steps=[len(a), len(b)])
    metrics = []
    for name in sorted(set(theirs) | set(ours)):
        a, b = dict(theirs.get(name, [])), ours.get(name, {})
        last = max(a or b)
        x, y = a.get(last), b.get(last)
        metrics.append(MetricDelta(name=name, original=x, replay=y,
                                   delta=None if x is None or y is None else y - x,
                                   ok=name not in parted))
    return dict(sorted(parted.items())), metrics


def settle(v: Verdict, local_path: Callable[[str], Path]) -> None:
    """What differs inside each differing output (``content``), then each output's own
    tolerance held against it: the verdict is ``within-tolerance`` when everything that
    differs is within a tolerance (an output without its own counts as within when metric
    tolerances are given, as before), ``differs`` when an output misses its own."""
    annotate(v, local_path)
    differ = v.outputs.differ
    own = []
    for d in differ:
        tol = output_tolerance(v.tolerances, d.path)
        if tol is not None:
            d.tolerance = tol
            d.within_tolerance = within(d.content or {}, tol)
            own.append(d.within_tolerance)
    if v.result not in (DIFFERS, WITHIN_TOLERANCE) or not own:
        return
    outs = v.outputs
    rest_ok = (v.outcome is None and not outs.missing and not outs.extra
               and all(m.ok for m in v.metrics)
               and (v.logs is None or v.logs.identical)
               and (metric_tolerances(v.tolerances) or all(d.tolerance is not None
                                                            for d in differ)))
    v.result = WITHIN_TOLERANCE if rest_ok and all(own) else DIFFERS


def host_changes(original: HostFacts, current: HostFacts) -> list[EnvChange]:
    """Hardware facts that differ between the recording host and this one."""
    return [EnvChange.model_validate(c) for c in facts.changes(
        facts.of_host(original), facts.of_host(current), facts.HARDWARE)]


def environment_changes(original: RunRecord, replay: RunRecord) -> list[EnvChange]:
    a, b = facts.of_record(original), facts.of_record(replay)
    return [EnvChange.model_validate(c) for c in facts.changes(a, b, list(a))]


def series_divergence(original: dict[str, list[tuple[int, float]]],
                      replay: list[tuple[str, int, float]]) -> dict[str, SeriesPart]:
    """Where two runs' metric series part ways: per metric logged by both, the first step at
    which the values differ (or one has a step the other lacks), with both values."""
    mine: dict[str, dict[int, float]] = {}
    for name, step, value in replay:
        mine.setdefault(name, {})[step] = value
    out: dict[str, SeriesPart] = {}
    for name, points in sorted(original.items()):
        if name not in mine:
            continue
        theirs = dict(points)
        for step in sorted(set(theirs) | set(mine[name])):
            a, b = theirs.get(step), mine[name].get(step)
            same = a == b or (a is not None and b is not None and math.isnan(a)
                              and math.isnan(b))
            if not same:
                out[name] = SeriesPart(step=step, original=a, replay=b,
                                       steps=[len(theirs), len(mine[name])])
                break
    return out


def part_ways(v: Verdict | None, original: dict[str, list[tuple[int, float]]],
              replay: list[tuple[str, int, float]]) -> None:
    if v is not None:
        parted = series_divergence(original, replay)
        if parted:
            v.series = parted
