"""`repro verify`: the CI gate. Replay a run (or an exported bundle) and turn the verdict into
an exit code and a report (JSON, JUnit XML)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

from . import partial
from .bundle import import_bundle
from .engine import Engine
from .record import RunRecord, Verdict
from .replay import Grants, replay
from .runner import Hooks
from .store import Store
from .verdicts import DIFFERS, IDENTICAL


def target_record(target: str, store: Store, on_line: Callable[[str], None]) -> RunRecord:
    """A run id (or prefix) in the store, or a bundle folder / manifest file to import."""
    path = Path(target)
    try:
        bundle = path.exists()
    except OSError:  # a name too long to be a file: a run id, or no run at all
        bundle = False
    if bundle:
        return import_bundle(path, store, on_line)
    return store.runs.get(target)


def verify(target: str, store: Store, engine: Engine, hooks: Hooks,
           tolerances: dict[str, float], strict_env: bool,
           grants: Grants | None = None,
           elsewhere: Callable[[RunRecord], RunRecord] | None = None,
           steps: int | None = None, budget_s: float | None = None,
           segment: str | None = None,
           ) -> tuple[RunRecord, RunRecord]:
    """``steps``/``budget_s``: a prefix verify, ``segment`` (a checkpoint's step, random or
    random:SEED) a segment verify (``partial.py``); a prefix that covers the whole run is a
    full verify, and says so."""
    original = target_record(target, store, hooks.on_line)
    part: partial.Prefix | partial.Segment | None = None
    if segment is not None:
        part, seed = partial.plan_segment(original, store.runs.steps(original.id), segment)
        if seed is not None:
            hooks.on_line(f"segment drawn with seed {seed}: steps {part.start:,} to "
                          f"{part.end:,} (again: --segment random:{seed})")
    elif steps is not None or budget_s is not None:
        part = partial.plan(original, store.runs.steps(original.id), steps, budget_s)
        if part is None:
            hooks.on_line(f"note: run {original.id} has no step past the ones asked for: "
                          "verifying all of it")
    return original, replay(original, store, engine, hooks, tolerances, strict_env, grants,
                            elsewhere, part=part)


def junit(original: RunRecord, rec: RunRecord) -> str:
    """One test case per output file and metric, plus the run's outcome."""
    v = rec.verdict or Verdict(result=DIFFERS)
    suite = ET.Element("testsuite", name=f"repro verify {original.name}",
                       timestamp=rec.created_at, time=f"{rec.duration_s or 0:.3f}")
    cases: list[tuple[str, str | None]] = []
    cases.append(("outcome", None if v.outcome is None else
                  f"original {v.outcome.original}, replay {v.outcome.replay}"))
    outs = v.outputs
    cases += [(f"output {p}", None) for p in outs.identical]
    cases += [(f"output {r.original} (renamed {r.replay})", None) for r in outs.renamed]
    cases += [(f"output {d.path}" + (f" (renamed {d.renamed})" if d.renamed else ""),
               None if d.within_tolerance else
               f"sha256 {d.original.sha256} -> {d.replay.sha256}"
               + (f": {(d.content or {})['summary']}" if (d.content or {}).get("summary")
                  else "")) for d in outs.differ]
    cases += [(f"output {p}", "missing in the replay") for p in outs.missing]
    cases += [(f"output {p}", "not in the original") for p in outs.extra]
    logs = v.logs
    if logs is not None:
        first = logs.first_difference
        cases.append(("logs", None if logs.identical else
                      f"the {logs.missing} run has no stored logs" if logs.missing
                      else f"line {first.line if first else None}: "
                           f"{first.original if first else None!r} -> "
                           f"{first.replay if first else None!r}"))
    if v.result == "nothing-compared":
        cases.append(("something compared", "no outputs, no metrics, logs not compared"))
    if v.through_step is not None:  # a prefix: each series point by point, up to the step
        for m in v.metrics:
            part = v.series.get(m.name)
            cases.append((f"series {m.name} through step {v.through_step}", None if part is None
                          else f"parts ways at step {part.step}: {part.original} -> "
                               f"{part.replay}"))
    else:
        for m in v.metrics:
            cases.append((f"metric {m.name}", None if m.ok or v.result == IDENTICAL else
                          f"{m.original} -> {m.replay} (delta {m.delta}, tolerance "
                          f"{m.tolerance})"))
    failures = 0
    for name, failure in cases:
        case = ET.SubElement(suite, "testcase", classname=f"repro.{original.name}", name=name)
        if failure:
            failures += 1
            ET.SubElement(case, "failure", message=failure).text = failure
    if v.through_step is not None and v.from_step is None:
        case = ET.SubElement(suite, "testcase", classname=f"repro.{original.name}",
                             name="outputs")
        ET.SubElement(case, "skipped", message=f"a prefix verify: the job was stopped after "
                      f"step {v.through_step} of {v.of_steps}; outputs are not compared")
        cases.append(("outputs", None))
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    ET.SubElement(suite, "system-out").text = (
        f"run {original.id} replayed as {rec.id}: {v.result}")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
