"""`repro compare`: runs side by side (pure: records in, a comparison document out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import facts
from ..record import RunRecord

Series = dict[str, list[tuple[int, float]]]


def _facts(r: RunRecord) -> dict[str, Any]:
    """The run's own settings, then its environment in the vocabulary replay uses."""
    res = r.resolved
    env = facts.of_record(r)
    env.pop("container.packages")  # compared package by package below
    env.pop("cpu.flags")  # dozens of flags: replay names the ones that changed
    return {
        "status": str(r.status), "spec_digest": r.spec_digest,
        "code.commit": res.code.commit, "code.snapshot": res.code.snapshot,
        "code.dirty": res.code.dirty, "seed": res.seed, "cpus": res.resources.cpus,
        "memory": res.resources.memory, "determinism": res.determinism, "network": res.network,
        "inputs": ", ".join(f"{n}={i.sha256[:12]}" for n, i in sorted(res.inputs.items())),
        "host.os": r.environment.host.os or None,
        **{k: facts.shown(v) for k, v in env.items()},
        "duration_s": r.duration_s,
    }


def _rows(values: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys = sorted({k for v in values for k in v})
    return {k: [v.get(k) for v in values] for k in keys}


def _differs(row: list[Any]) -> bool:
    return any(x != row[0] for x in row[1:])


def compare(records: list[RunRecord], series: dict[str, Series] | None = None,
            local_path: Callable[[str], Any] | None = None,
            diffoscope: bool = True) -> dict[str, Any]:
    """Params, metrics, outputs, facts and packages of each run; what differs is listed.
    With each run's metric ``series``: where each run's curves part ways with the first
    run's (``part_ways``). With ``local_path`` (an artifact's bytes on this machine): what
    differs inside each output that differs from the first run's (``content_vs_first``; at
    most ``CONTENT_MAX`` outputs, diffoscope for the first three of other formats unless
    ``diffoscope`` is off: the dashboard, which must answer promptly, turns it off)."""
    params = _rows([r.params for r in records])
    metrics = _rows([r.metrics for r in records])
    outputs = _rows([{p: f.sha256 for p, f in r.outputs.items()} for r in records])
    fact_rows = _rows([_facts(r) for r in records])
    base = facts.of_record(records[0])["container.packages"]
    packages = []
    for r in records[1:]:
        change = facts.diff("container.packages", base,
                            facts.of_record(r)["container.packages"]) or {}
        packages.append({"run": r.id, "added": change.get("added", {}),
                         "removed": change.get("removed", {}),
                         "changed": change.get("changed", {})})
    return {
        "runs": [{"id": r.id, "name": r.name, "created_at": r.created_at} for r in records],
        "params": params, "metrics": metrics, "outputs": outputs, "facts": fact_rows,
        "packages_vs_first": packages,
        "part_ways": _part_ways(records, series) if series is not None else {},
        "content_vs_first": _content(records, local_path, diffoscope)
        if local_path is not None else {},
        "differs": {
            "params": [k for k, v in params.items() if _differs(v)],
            "metrics": [k for k, v in metrics.items() if _differs(v)],
            "outputs": [k for k, v in outputs.items() if _differs(v)],
            "facts": [k for k, v in fact_rows.items() if _differs(v) and k != "duration_s"],
            "packages": any(p["added"] or p["removed"] or p["changed"] for p in packages),
        },
    }


def _part_ways(records: list[RunRecord], series: dict[str, Series]) -> dict[str, Any]:
    """{metric: {run id: {step, first, this}}}: the first step at which each run's curve
    leaves the first run's (runs whose curve never does are absent)."""
    from ..verdicts import series_divergence

    base = series.get(records[0].id, {})
    out: dict[str, Any] = {}
    for r in records[1:]:
        mine = [(name, step, v) for name, pts in series.get(r.id, {}).items()
                for step, v in pts]
        for name, part in series_divergence(base, mine).items():
            out.setdefault(name, {})[r.id] = {"step": part.step, "first": part.original,
                                              "this": part.replay}
    return out


CONTENT_MAX = 20


def _content(records: list[RunRecord], local_path: Callable[[str], Any],
             diffoscope: bool) -> dict[str, Any]:
    """{output: {run id: summary}}: what differs inside each output against the first run's."""
    from ..content import DIFFOSCOPE_FILES, explain

    first = records[0].outputs
    out: dict[str, Any] = {}
    asked = 0
    for r in records[1:]:
        for path, ref in sorted(r.outputs.items()):
            if path not in first or first[path].sha256 == ref.sha256:
                continue
            if asked >= CONTENT_MAX:
                return out
            asked += 1
            try:
                found = explain(path, local_path(first[path].sha256), local_path(ref.sha256),
                                diffoscope and asked <= DIFFOSCOPE_FILES)
            except OSError as e:
                found = {"summary": f"not compared by content ({e.strerror})"}
            if found is not None:
                out.setdefault(path, {})[r.id] = found.get("summary")
    return out
