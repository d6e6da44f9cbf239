"""One run in detail on the terminal: its record page (`repro show`, a launch's summary), a
replay's verdict and a diagnosis, on ``ui.py``'s console and styles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .hashing import shown
from .record import Diagnosis, RunRecord, RunStatus, Verdict
from .ui import STATUS_STYLE, VERDICT_STYLE, T, _out, fmt_num, sparkline, status_text
from .units import human_size


def render_record(r: RunRecord, series: dict[str, list[tuple[int, float]]],
                  replays: Sequence[RunRecord] = (), tags: dict[str, str] | None = None,
                  notes: Sequence[tuple[str, str]] = (),
                  diagnoses: Sequence[Diagnosis] = (),
                  authors: dict[str, str] | None = None) -> None:
    """``authors``: the store role that wrote each row (a team store), shown beside what
    each record's client said of itself."""
    from rich.table import Table

    authors = authors or {}

    out = _out()
    res = r.resolved
    head = T(f"run {r.id}  ", style="bold") + T(f"{r.name}  ") + status_text(r.status)
    if r.exit_code is not None:
        head += T(f"  exit {r.exit_code}")
    out.print(head)
    if r.reason:
        out.print(T(f"  {r.reason}", style=STATUS_STYLE.get(r.status, "")))
    kv = Table.grid(padding=(0, 2))
    kv.add_column(style="bold", no_wrap=True)
    kv.add_column(overflow="fold")
    took = f"{r.duration_s:.2f} s" if r.duration_s is not None else "-"
    kv.add_row("when", f"{r.created_at}  took {took}")
    if r.user or r.host or r.id in authors:
        kv.add_row("by", T(f"{r.user or '?'} on {r.host or '?'}" + (
            f" (recorded by store role {authors[r.id]})" if r.id in authors else "")))
    if r.executor:
        ex = r.executor
        ran_on = r.environment.host.hostname
        kv.add_row("executor", T(f"{ex.get('kind')} job {ex.get('job_id', '-')}"
                                 + (f" on {ran_on}" if ran_on else "")
                                 + "".join(f", {k} {ex[k]}" for k in ("partition", "account",
                                                                     "qos") if ex.get(k))))
    kv.add_row("spec", f"{r.spec_path}  {r.spec_digest}")
    kv.add_row("image", f"{res.image.digest}" + (f"  ({res.image.ref})" if res.image.ref else ""))
    code = res.code
    kv.add_row("code", f"{code.commit or 'no commit'}{' (dirty)' if code.dirty else ''}  "
               f"{code.path}  snapshot {shown(code.snapshot)}...")
    kv.add_row("command", " ".join(res.command))
    kv.add_row("seed", str(res.seed))
    rs = res.resources
    kv.add_row("resources", f"cpus {rs.cpus:g} (threads {rs.threads}), memory {rs.memory}, "
               f"gpus {rs.gpus or 0}, network {res.network}, determinism {res.determinism}")
    if res.packages:
        kv.add_row("packages", f"{res.packages.lock} ({len(res.packages.pins)} pins) "
                   f"sha256 {res.packages.sha256[:16]}...")
    host = r.environment.host
    if host.model_fields_set or host.model_extra:  # a record from before: nothing known
        gpus = ", ".join(g.name for g in host.gpus) or "no GPUs"
        kv.add_row("host", f"{host.os or None}, kernel {host.kernel or None}, "
                   f"{host.cpu.model or None}, {(host.engine or 'docker').capitalize()} "
                   f"{host.docker}, {gpus}")
        if host.limits:
            kv.add_row("limits", ", ".join(f"{k} {v}" for k, v in host.limits.items()
                                           if k != "runtime"))
    cont = r.environment.container
    if cont.os or cont.python:
        kv.add_row("container", f"{cont.os or None}, Python {cont.python}, "
                   f"{len(cont.packages)} packages" + (
                       " (as the job reported them: it could rewrite them)"
                       if cont.captured == "job" else ""))
    if cont.seeded:
        kv.add_row("seeding", "seeded as reported by the job: " + ", ".join(cont.seeded))
    if res.resume is not None:
        from .partial import checkpoints

        steps = [f"{step:,}" for step, _ in checkpoints(r)]
        kv.add_row("resumes", f"{' '.join(res.resume.args)}; checkpoints "
                   + (f"at steps {', '.join(steps[:12])}{' ...' if len(steps) > 12 else ''} "
                      "(repro verify --segment STEP)" if steps else "none recorded"))
    out.print(kv)
    _files_table("inputs", {n + ("" if i.stored or i.kind == "dir" else " (not in the store)"):
                            (i.sha256, i.size) for n, i in res.inputs.items()})
    _files_table("outputs", {p: (f.sha256, f.size) for p, f in r.outputs.items()})
    for path, why in r.skipped_outputs.items():
        out.print(T(f"  skipped output {path}: {why}", style="yellow"))
    if r.params:
        out.print(T("params  ", style="bold") + T(
            "  ".join(f"{k}={fmt_num(v)}" for k, v in sorted(r.params.items()))))
    if r.metrics:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("metric", "value", "curve"):
            t.add_column(col)
        for name, value in sorted(r.metrics.items()):
            pts = series.get(name, [])
            t.add_row(name, fmt_num(value), sparkline([v for _, v in pts]) if len(pts) > 1
                      else "")
        out.print(t)
    if r.replay_of:
        result: str = r.verdict.result if r.verdict else "-"
        out.print(T("replay of ", style="bold") + T(f"{r.replay_of}: ")
                  + T(result, style=VERDICT_STYLE.get(result, "")))
    for rep in replays:
        result = (rep.verdict.result if rep.verdict else str(rep.status))
        by = f" by {authors[rep.id]}" if rep.id in authors else ""
        out.print(T("replayed ", style="bold") + T(f"as {rep.id} at {rep.created_at}{by}: ")
                  + T(result, style=VERDICT_STYLE.get(result, "")))
    if tags:
        out.print(T("tags  ", style="bold") + T(
            "  ".join(f"{k}={v}" for k, v in tags.items())))
    for at, text in notes:
        out.print(T("note  ", style="bold") + T(f"{at[:19].replace('T', ' ')}  ",
                                                      style="dim") + T(text))
    for w in r.warnings:
        out.print(T(f"warning: {w}", style="yellow"))
    if diagnoses:
        render_diagnosis(diagnoses[-1], brief=True)
    if r.status != RunStatus.SUCCEEDED and r.stderr_tail.strip():
        out.print(T("stderr (tail):", style="bold"))
        out.print(T(r.stderr_tail.rstrip()[-1500:], style="dim", lines=True))


def _files_table(title: str, files: dict[str, tuple[str, int]]) -> None:
    from rich.table import Table

    out = _out()
    if not files:
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    t.add_column(title, overflow="fold")
    t.add_column("sha256", no_wrap=True)
    t.add_column("size", justify="right")
    full = out.width >= 120
    for name, (sha, size) in sorted(files.items()):
        t.add_row(name, sha if full else sha[:16] + "…", _size(size))
    out.print(t)


def _size(n: int) -> str:
    return human_size(n)


def _render_prefix(out: Any, v: Verdict) -> None:
    """A prefix verify's lines: how far it ran, and where it first differs."""
    through, of, start = v.through_step or 0, v.of_steps or 0, v.from_step
    span = (f"the steps up to {through:,} of {of:,}" if start is None else
            f"the segment from step {start:,} to {through:,} of {of:,}")
    if v.result == "identical-prefix":
        out.print(T(f"  identical through step {through:,} of {of:,}: the rest was not run",
                    style="green"))
    elif v.result == "identical-segment":
        out.print(T(f"  identical from the checkpoint of step {start:,} to the one of step "
                    f"{through:,} (of {of:,}): the rest was not run", style="green"))
    if v.series:
        name, part = min(v.series.items(), key=lambda kv: (kv[1].step, kv[0]))
        out.print(T(f"  differs at step {part.step:,} (metric {name}: {part.original} -> "
                    f"{part.replay}), in {span}", style="red"))
    if start is None:
        out.print(T(f"  outputs: not compared (the job was stopped after step {through:,}); "
                    f"metrics: {len(v.metrics)} series compared point by point", style="dim"))
        return
    outs = v.outputs  # a differing or missing checkpoint is drawn below, as outputs are
    for p in outs.identical:
        out.print(f"  checkpoint {p}: identical")
    out.print(T(f"  metrics: {len(v.metrics)} series compared point by point; logs not "
                "compared (a resumed job prints its own)", style="dim"))


def render_verdict(rec: RunRecord) -> None:
    from rich.table import Table

    out = _out()
    v = rec.verdict or Verdict(result="differs")
    result, outs = v.result, v.outputs
    renamed = outs.renamed
    out.print(T(f"replay {rec.id} of {rec.replay_of}: ", style="bold")
              + T(result.upper(), style=VERDICT_STYLE.get(result, ""))
              + T(f", {len(renamed)} renamed by pattern" if renamed else ""))
    if v.outcome is not None:
        out.print(T(f"  outcome changed: original {v.outcome.original}, replay "
                    f"{v.outcome.replay}", style="red"))
    if v.through_step is not None:
        _render_prefix(out, v)
    else:
        out.print(f"  outputs: {len(outs.identical)} identical, "
                  + (f"{len(renamed)} renamed by pattern, " if renamed else "") +
                  f"{len(outs.differ)} differ, {len(outs.missing)} missing, "
                  f"{len(outs.extra)} extra")
    if outs.differ:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("differs", "original sha256", "replay sha256", "sizes"):
            t.add_column(col, overflow="fold")
        for d in outs.differ:
            t.add_row(d.path + (f" -> {d.renamed}" if d.renamed else ""),
                      d.original.sha256, d.replay.sha256,
                      f"{_size(d.original.size)} -> {_size(d.replay.size)}")
        out.print(t)
        for d in outs.differ:
            if (d.content or {}).get("summary"):
                tol = d.tolerance
                held = "" if tol is None else (
                    f" (within its tolerance {_tol(tol)})" if d.within_tolerance
                    else f" (outside its tolerance {_tol(tol)})")
                out.print(T(f"  {d.path}: {(d.content or {})['summary']}{held}",
                            style="yellow" if d.within_tolerance is not False else "red"))
    for r in renamed:
        out.print(T(f"  renamed by pattern: {r.original} -> {r.replay} (identical "
                    "bytes; the name carries the time or the host)", style="dim"))
    for name, part in sorted(v.series.items()):
        out.print(T(f"  series {name} parts ways at step {part.step}: "
                    f"{part.original} -> {part.replay}", style="yellow"))
    if result == "nothing-compared":
        out.print(T("  the run left no outputs and no metrics (and its logs are not compared):"
                    " nothing shows it reproduced. Write results into the working folder, "
                    "log metrics, or add `compare: [outputs, metrics, logs]` to the spec",
                    style="magenta"))
    logs = v.logs
    if logs is not None:
        if logs.identical:
            out.print(f"  logs: identical ({logs.lines or 0} lines"
                      + (", normalised" if logs.normalized else "") + ")")
        elif logs.missing:
            out.print(T(f"  logs: the {logs.missing} run has none stored", style="red"))
        else:
            first = logs.first_difference
            out.print(T(f"  logs differ from line {first.line if first else None}: "
                        f"{first.original if first else None!r} -> "
                        f"{first.replay if first else None!r}", style="red"))
    for p in outs.missing:
        out.print(T(f"  missing in the replay: {p}", style="red"))
    for p in outs.extra:
        out.print(T(f"  only in the replay: {p}", style="yellow"))
    changed = [m for m in v.metrics if m.delta != 0]
    if changed:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("metric", "original", "replay", "delta", "tolerance"):
            t.add_column(col)
        for m in changed:
            t.add_row(m.name, fmt_num(m.original), fmt_num(m.replay), fmt_num(m.delta),
                      fmt_num(m.tolerance) if m.tolerance is not None else "-",
                      style="" if m.ok else "red")
        out.print(t)
    for c in v.environment:
        if c.of_a_value:
            what = f"{c.original} -> {c.replay}"
        else:
            parts = [f"+{', '.join(map(str, c.added))}" if c.added else "",
                     f"-{', '.join(map(str, c.removed))}" if c.removed else ""]
            parts += [f"{k} {a} -> {b}" for k, (a, b) in c.changed.items()]
            what = "; ".join(p for p in parts if p)
        out.print(T(f"  environment: {c.fact} changed: {what[:300]}", style="yellow")
                  + T(f"  ({c.hint})", style="dim"))


def _tol(tol: dict[str, int | float]) -> str:
    return f"{tol['ulp']:g} ULP" if "ulp" in tol else f"abs {tol['abs']:g}"


DIAGNOSIS_STYLE = {"reproduces": "bold green", "nondeterministic": "bold red",
                   "changed": "bold yellow", "fails": "bold red",
                   "inconclusive": "bold yellow"}
MAX_CAUSE_SUBJECTS = 5  # under each cause in `repro show` (the whole list in `diagnose`)


def render_diagnosis(doc: Diagnosis, brief: bool = False) -> None:
    """A diagnosis: each experiment with its runs, then one sentence per differing output
    and the fixes to try (``brief``: the sentences only, for `repro show`)."""
    out = _out()
    result = doc.result
    out.print(T(f"diagnosis of run {doc.run}: ", style="bold")
              + T(result.upper(), style=DIAGNOSIS_STYLE.get(result, ""))
              + T(f"  ({doc.created_at[:19].replace('T', ' ')}, "
                  f"{doc.cost.replays} replays)", style="dim"))
    if not brief:
        by_run = {r.run: r.versus_original for r in doc.runs}
        for e in doc.experiments:
            verdicts = ", ".join(f"{rid} {by_run.get(rid, '?')}" for rid in e.runs)
            extra = ("  (the controlled pair agree)" if e.agree else
                     "  (the controlled pair differ)" if e.agree is False and not e.failed
                     else "")
            out.print(T(f"  {e.title}: ", style="bold") + T(verdicts, style="dim")
                      + T(extra, style="dim"))
            if e.failed:
                out.print(T(f"    {e.failed}" if e.name == "controlled" else
                            f"    the job did not end as the plain replays did: "
                            f"{e.failed}", style="yellow"))
        for name, why in sorted(doc.skipped.items()):
            out.print(T(f"  not tried: {name}: {why}", style="dim"))
    if result == "reproduces":
        out.print(T("  every replay is identical to the original on this host: nothing to "
                    "diagnose", style="green"))
    for c in doc.grouped_causes:
        out.print(T(f"  {c.line}", style="yellow"))
        subjects = c.subjects
        for s in subjects[:MAX_CAUSE_SUBJECTS] if brief else subjects:
            where = f": {s.where}" if s.where else ""
            out.print(T(f"    {s.subject}{where}") + T(
                f"  (in a plain replay: {s.how_much})" if s.how_much else "", style="dim"))
        if brief and len(subjects) > MAX_CAUSE_SUBJECTS:
            out.print(T(f"    ... and {len(subjects) - MAX_CAUSE_SUBJECTS} more", style="dim"))
        for fix in c.fixes:
            out.print(T(f"    try: {fix}", style="dim"))
    for ch in doc.environment:
        out.print(T(f"  environment: {ch.fact} changed: {ch.shown[:300]}", style="yellow")
                  + T(f"  ({ch.hint})", style="dim"))
    cost = doc.cost
    if not brief and cost.multiple:
        out.print(T(f"  cost: {cost.replays} replays in {cost.seconds:.1f} s, "
                    f"{cost.multiple:.1f}x one replay ({cost.one_replay_s:.1f} s)",
                    style="dim"))
