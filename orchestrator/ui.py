"""All static terminal output: rich tables for people, one JSON document for scripts (the
widgets that redraw while work goes on are ``ui_live.py``'s).

Progress and job logs go to stderr; the result (a table or ``--json``) goes to stdout. rich is
imported only when a table is drawn: the ``--json`` launch path does not pay for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from .hashing import shown
from .record import RunRecord, RunStatus
from .units import human_size
from .untrusted import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def plain_console(**kwargs: Any) -> Console:
    """A console that prints what it is given as plain text: no markup (a tag value like
    ``[/x]`` once made `repro runs` exit 1), no emoji codes, and control characters shown as
    escapes (an ANSI sequence in an output name would restyle the terminal)."""
    from rich.console import Console

    class Plain(Console):
        def render_str(self, text: str, **kw: Any) -> Any:
            return super().render_str(printable(text), **kw)

    return Plain(highlight=False, markup=False, emoji=False, **kwargs)


@cache
def _out() -> Console:
    # Piped output is not cut at 80 columns: digests must survive `| grep` and CI logs.
    return plain_console(width=None if sys.stdout.isatty() else 200)


def T(text: str, style: str = "", lines: bool = False) -> Text:
    """rich Text of user data, control characters escaped (newlines kept with ``lines``)."""
    from rich.text import Text

    return Text(printable(text, lines), style=style)


def tty_style(text: str, code: str) -> str:
    if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        return f"\x1b[{code}m{text}\x1b[0m"
    return text

STATUS_STYLE = {
    RunStatus.SUCCEEDED: "green", RunStatus.FAILED: "red", RunStatus.TIMEOUT: "red",
    RunStatus.INTERRUPTED: "yellow", RunStatus.LOST: "magenta", RunStatus.RUNNING: "cyan",
    RunStatus.PENDING: "dim", RunStatus.QUEUED: "dim",
}
SPARK = "▁▂▃▄▅▆▇█"


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def progress(line: str) -> None:
    sys.stderr.write(tty_style(printable(line), "2") + "\n")
    sys.stderr.flush()


def error(message: str) -> None:
    sys.stderr.write(tty_style("error: ", "1;31") + printable(message, lines=True) + "\n")


def status_text(status: RunStatus) -> Text:

    return T(str(status), STATUS_STYLE.get(status, ""))


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) > 40:  # keep the shape, not every point
        step = len(values) / 40
        values = [values[int(i * step)] for i in range(40)] + [values[-1]]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[int((v - lo) / span * (len(SPARK) - 1))] for v in values)


def fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def print_csv(rows: list[dict[str, Any]]) -> None:
    import csv

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    writer = csv.DictWriter(sys.stdout, fieldnames=[_cell(c) for c in columns],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({_cell(k): _cell(v) for k, v in row.items()} for row in rows)


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab or CR)
    gets a leading quote. Numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render_runs(records: list[RunRecord], tags: dict[str, dict[str, str]] | None = None,
                published: set[str] | frozenset[str] = frozenset()) -> None:
    from rich.table import Table

    out = _out()
    tags = tags or {}
    if not records:
        out.print("no runs match (or none yet: try `repro launch specs/hello.yaml`)")
        return
    metric_names = sorted({m for r in records for m in r.metrics})[:4]
    param_names = sorted({p for r in records for p in r.params})[:4]
    t = Table(box=None, header_style="bold", pad_edge=False)
    users = any(r.user for r in records)
    for col in ("id", "name", "status", *(["user"] if users else []), "created", "took",
                *param_names, *metric_names):
        t.add_column(col, no_wrap=col != "name")
    any_tags = any(tags.get(r.id) for r in records)
    if any_tags:
        t.add_column("tags")
    for r in records:
        took = f"{r.duration_s:.1f}s" if r.duration_s is not None else ""
        name = T(r.name)
        if r.id in published:  # cited with `repro cite`
            name += T(" ★", "bold yellow")
        if r.replay_of:  # a replay: of which run, and what it found
            result = (r.verdict or {}).get("result", str(r.status))
            name += T(f" ↺ {r.replay_of[:8]} {result}", VERDICT_STYLE.get(result, "dim"))
        row: list[Any] = [r.id, name, status_text(r.status)]
        row += [T(r.user.split("@")[0] if r.user else "")] if users else []
        row += [r.created_at.replace("T", " ")[:19], took]
        row += [fmt_num(r.params[p]) if p in r.params else "" for p in param_names]
        row += [fmt_num(r.metrics[m]) if m in r.metrics else "" for m in metric_names]
        if any_tags:
            row.append(" ".join(f"{k}={v}" for k, v in tags.get(r.id, {}).items()))
        t.add_row(*row)
    out.print(t)


def render_record(r: RunRecord, series: dict[str, list[tuple[int, float]]],
                  replays: Sequence[RunRecord] = (), tags: dict[str, str] | None = None,
                  notes: Sequence[tuple[str, str]] = (),
                  diagnoses: Sequence[dict[str, Any]] = (),
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
        ran_on = (r.environment.get("host") or {}).get("hostname")
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
    host = r.environment.get("host", {})
    if host:
        gpus = ", ".join(g["name"] for g in host.get("gpus", [])) or "no GPUs"
        kv.add_row("host", f"{host.get('os')}, kernel {host.get('kernel')}, "
                   f"{host.get('cpu', {}).get('model')}, Docker {host.get('docker')}, {gpus}")
    cont = r.environment.get("container", {})
    if cont.get("os") or cont.get("python"):
        kv.add_row("container", f"{cont.get('os')}, Python {cont.get('python')}, "
                   f"{len(cont.get('packages', []))} packages" + (
                       " (as the job reported them: it could rewrite them)"
                       if cont.get("captured") == "job" else ""))
    if cont.get("seeded"):
        kv.add_row("seeding", "seeded as reported by the job: " + ", ".join(cont["seeded"]))
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
        result = (r.verdict or {}).get("result", "-")
        out.print(T("replay of ", style="bold") + T(f"{r.replay_of}: ")
                  + T(result, style=VERDICT_STYLE.get(result, "")))
    for rep in replays:
        result = (rep.verdict or {}).get("result", str(rep.status))
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


def render_doctor(checks: list[dict]) -> None:

    out = _out()
    for c in checks:
        mark = T("ok  ", style="green") if c["ok"] else T("FAIL", style="bold red")
        out.print(mark + T(f"  {c['name']}: {c['detail']}"))
        if not c["ok"] and c.get("fix"):
            out.print(T(f"        fix: {c['fix']}", style="yellow"))


VERDICT_STYLE = {"identical": "bold green", "within-tolerance": "bold yellow",
                 "differs": "bold red", "nothing-compared": "bold magenta"}


def render_verdict(rec: RunRecord) -> None:
    from rich.table import Table

    out = _out()
    v = rec.verdict or {}
    result = v.get("result", "differs")
    outs = v.get("outputs", {})
    renamed = outs.get("renamed") or []
    out.print(T(f"replay {rec.id} of {rec.replay_of}: ", style="bold")
              + T(result.upper(), style=VERDICT_STYLE.get(result, ""))
              + T(f", {len(renamed)} renamed by pattern" if renamed else ""))
    if v.get("outcome"):
        out.print(T(f"  outcome changed: original {v['outcome']['original']}, replay "
                       f"{v['outcome']['replay']}", style="red"))
    out.print(f"  outputs: {len(outs.get('identical', []))} identical, "
              + (f"{len(renamed)} renamed by pattern, " if renamed else "") +
              f"{len(outs.get('differ', []))} differ, {len(outs.get('missing', []))} missing, "
              f"{len(outs.get('extra', []))} extra")
    if outs.get("differ"):
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("differs", "original sha256", "replay sha256", "sizes"):
            t.add_column(col, overflow="fold")
        for d in outs["differ"]:
            t.add_row(d["path"] + (f" -> {d['renamed']}" if d.get("renamed") else ""),
                      d["original"]["sha256"], d["replay"]["sha256"],
                      f"{_size(d['original']['size'])} -> {_size(d['replay']['size'])}")
        out.print(t)
        for d in outs["differ"]:
            if (d.get("content") or {}).get("summary"):
                tol = d.get("tolerance")
                held = "" if tol is None else (
                    f" (within its tolerance {_tol(tol)})" if d.get("within_tolerance")
                    else f" (outside its tolerance {_tol(tol)})")
                out.print(T(f"  {d['path']}: {d['content']['summary']}{held}",
                            style="yellow" if d.get("within_tolerance") is not False
                            else "red"))
    for r in renamed:
        out.print(T(f"  renamed by pattern: {r['original']} -> {r['replay']} (identical "
                    "bytes; the name carries the time or the host)", style="dim"))
    for name, part in sorted((v.get("series") or {}).items()):
        out.print(T(f"  series {name} parts ways at step {part['step']}: "
                    f"{part['original']} -> {part['replay']}", style="yellow"))
    if result == "nothing-compared":
        out.print(T("  the run left no outputs and no metrics (and its logs are not compared):"
                    " nothing shows it reproduced. Write results into the working folder, "
                    "log metrics, or add `compare: [outputs, metrics, logs]` to the spec",
                    style="magenta"))
    logs = v.get("logs")
    if logs:
        if logs.get("identical"):
            out.print(f"  logs: identical ({logs.get('lines', 0)} lines"
                      + (", normalised" if logs.get("normalized") else "") + ")")
        elif logs.get("missing"):
            out.print(T(f"  logs: the {logs['missing']} run has none stored", style="red"))
        else:
            d = logs.get("first_difference") or {}
            out.print(T(f"  logs differ from line {d.get('line')}: {d.get('original')!r} -> "
                        f"{d.get('replay')!r}", style="red"))
    for p in outs.get("missing", []):
        out.print(T(f"  missing in the replay: {p}", style="red"))
    for p in outs.get("extra", []):
        out.print(T(f"  only in the replay: {p}", style="yellow"))
    changed = [m for m in v.get("metrics", []) if m.get("delta") != 0]
    if changed:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("metric", "original", "replay", "delta", "tolerance"):
            t.add_column(col)
        for m in changed:
            t.add_row(m["name"], fmt_num(m.get("original")), fmt_num(m.get("replay")),
                      fmt_num(m.get("delta")), fmt_num(m["tolerance"])
                      if m.get("tolerance") is not None else "-",
                      style="" if m.get("ok") else "red")
        out.print(t)
    for c in v.get("environment", []):
        if "original" in c:
            what = f"{c['original']} -> {c['replay']}"
        else:
            parts = [f"+{', '.join(map(str, c['added']))}" if c.get("added") else "",
                     f"-{', '.join(map(str, c['removed']))}" if c.get("removed") else ""]
            parts += [f"{k} {a} -> {b}" for k, (a, b) in c.get("changed", {}).items()]
            what = "; ".join(p for p in parts if p)
        out.print(T(f"  environment: {c['fact']} changed: {what[:300]}", style="yellow")
                  + T(f"  ({c.get('hint', '')})", style="dim"))


def _tol(tol: dict[str, float]) -> str:
    return f"{tol['ulp']:g} ULP" if "ulp" in tol else f"abs {tol['abs']:g}"


DIAGNOSIS_STYLE = {"reproduces": "bold green", "nondeterministic": "bold red",
                   "changed": "bold yellow", "fails": "bold red",
                   "inconclusive": "bold yellow"}
MAX_CAUSE_SUBJECTS = 5  # under each cause in `repro show` (the whole list in `diagnose`)


def render_diagnosis(doc: dict[str, Any], brief: bool = False) -> None:
    """A diagnosis: each experiment with its runs, then one sentence per differing output
    and the fixes to try (``brief``: the sentences only, for `repro show`)."""
    out = _out()
    result = doc.get("result", "")
    out.print(T(f"diagnosis of run {doc.get('run')}: ", style="bold")
              + T(result.upper(), style=DIAGNOSIS_STYLE.get(result, ""))
              + T(f"  ({doc.get('created_at', '')[:19].replace('T', ' ')}, "
                  f"{(doc.get('cost') or {}).get('replays', 0)} replays)", style="dim"))
    if not brief:
        by_run = {r["run"]: r for r in doc.get("runs", [])}
        for e in doc.get("experiments", []):
            verdicts = ", ".join(f"{rid} {by_run.get(rid, {}).get('versus_original', '?')}"
                                 for rid in e.get("runs", []))
            extra = ("  (the controlled pair agree)" if e.get("agree") else
                     "  (the controlled pair differ)" if e.get("agree") is False and
                     not e.get("failed") else "")
            out.print(T(f"  {e['title']}: ", style="bold") + T(verdicts, style="dim")
                      + T(extra, style="dim"))
            if e.get("failed"):
                out.print(T(f"    {e['failed']}" if e.get("name") == "controlled" else
                            f"    the job did not end as the plain replays did: "
                            f"{e['failed']}", style="yellow"))
        for name, why in sorted((doc.get("skipped") or {}).items()):
            out.print(T(f"  not tried: {name}: {why}", style="dim"))
    if result == "reproduces":
        out.print(T("  every replay is identical to the original on this host: nothing to "
                    "diagnose", style="green"))
    if doc.get("causes") is None:  # a diagnosis stored before causes were grouped
        doc = {**doc, "causes": [{"line": f["sentence"], "fixes": f.get("fixes", []),
                                  "subjects": []} for f in doc.get("findings", [])]}
    for c in doc.get("causes", []):
        out.print(T(f"  {c['line']}", style="yellow"))
        subjects = c.get("subjects", [])
        for s in subjects[:MAX_CAUSE_SUBJECTS] if brief else subjects:
            where = f": {s['where']}" if s.get("where") else ""
            out.print(T(f"    {s['subject']}{where}") + T(
                f"  (in a plain replay: {s['how_much']})" if s.get("how_much") else "",
                style="dim"))
        if brief and len(subjects) > MAX_CAUSE_SUBJECTS:
            out.print(T(f"    ... and {len(subjects) - MAX_CAUSE_SUBJECTS} more", style="dim"))
        for fix in c.get("fixes", []):
            out.print(T(f"    try: {fix}", style="dim"))
    for c in doc.get("environment", []):
        out.print(T(f"  environment: {c['fact']} changed: {c.get('shown', '')[:300]}",
                    style="yellow") + T(f"  ({c.get('hint', '')})", style="dim"))
    cost = doc.get("cost") or {}
    if not brief and cost.get("multiple"):
        out.print(T(f"  cost: {cost['replays']} replays in {cost['seconds']:.1f} s, "
                    f"{cost['multiple']:.1f}x one replay ({cost['one_replay_s']:.1f} s)",
                    style="dim"))


def render_compare(doc: dict[str, Any], show_all: bool) -> None:
    from rich.table import Table

    out = _out()
    ids = [r["id"] for r in doc["runs"]]
    differs = doc["differs"]

    def section(title: str, rows: dict[str, list[Any]], changed: list[str],
                fmt: Any = fmt_num) -> None:
        shown = {k: v for k, v in rows.items() if show_all or k in changed or title in (
            "params", "metrics")}
        if not shown:
            return
        t = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
        t.add_column(title)
        for rid in ids:
            t.add_column(rid[:12], overflow="fold")
        for key, values in shown.items():
            style = "bold yellow" if key in changed else ""
            t.add_row(T(key, style=style), *(T("-" if v is None else fmt(v),
                                                     style=style) for v in values))
        out.print(t)

    section("params", doc["params"], differs["params"])
    section("metrics", doc["metrics"], differs["metrics"])
    section("outputs", doc["outputs"], differs["outputs"], fmt=lambda v: str(v)[:16])
    section("facts", doc["facts"], differs["facts"],
            fmt=lambda v: str(v)[:40] if isinstance(v, str) else fmt_num(v))
    for p in doc["packages_vs_first"]:
        changes = [f"+{k}=={v}" for k, v in p["added"].items()]
        changes += [f"-{k}=={v}" for k, v in p["removed"].items()]
        changes += [f"{k} {a} -> {b}" for k, (a, b) in p["changed"].items()]
        if changes:
            out.print(T(f"packages of {p['run'][:12]} vs {ids[0][:12]}: ", style="bold")
                      + T(", ".join(changes), style="yellow"))
    for path, by_run in sorted((doc.get("content_vs_first") or {}).items()):
        for rid, summary in by_run.items():
            out.print(T(f"{path} of {rid[:12]} vs {ids[0][:12]}: ", style="bold")
                      + T(str(summary), style="yellow"))
    for name, by_run in sorted((doc.get("part_ways") or {}).items()):
        for rid, part in by_run.items():
            out.print(T(f"series {name} of {rid[:12]} parts ways with {ids[0][:12]}'s at "
                        f"step {part['step']}: ", style="bold")
                      + T(f"{fmt_num(part['first'])} -> {fmt_num(part['this'])}", style="yellow"))
    if not any(differs[k] for k in ("params", "metrics", "outputs", "facts", "packages")):
        out.print(T("no differences", style="green"))
    elif not show_all:
        out.print(T("only differing outputs and facts shown; --all shows every row",
                       style="dim"))


def render_sweep(sweep_id: str, rows: list[dict[str, Any]], metric: str | None,
                 swept: list[str]) -> None:
    from rich.table import Table

    out = _out()
    t = Table(box=None, header_style="bold", pad_edge=False,
              title=f"sweep {sweep_id}" + (f", ranked by {metric}" if metric else ""),
              title_justify="left")
    for col in ("#", "run", "status", *swept, *([metric] if metric else [])):
        t.add_column(col)
    for row in rows:
        style = "" if row["status"] == "succeeded" else "red"
        cells = [str(row["rank"]), row["id"] or "-", row["status"]]
        cells += [fmt_num(row["params"].get(n)) for n in swept]
        if metric:
            v = row["metrics"].get(metric)
            cells.append(fmt_num(v) if v is not None else "-")
        t.add_row(*cells, style=style)
    out.print(t)
    out.print(f"query it: repro runs --where \"sweep = {sweep_id}\"")


def render_importance(doc: dict[str, Any]) -> None:
    from rich.table import Table

    out = _out()
    over = (f"a sample of {doc['runs']:,} of {doc['sampled_from']:,}" if doc.get("sampled_from")
            else f"{doc['runs']}")
    out.print(T(f"importance for {doc['metric']} over {over} runs", style="bold"))
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("param", "importance", "", "direction", "kind", "levels"):
        t.add_column(col)
    for p in doc["params"]:
        bar = "█" * round(p["importance"] * 30)
        rho = p["spearman"]
        if rho is None:
            direction = ""
        elif abs(rho) < 0.1:
            direction = f"no monotone trend (rho {rho:+.2f})"
        else:
            direction = (f"{'higher' if rho > 0 else 'lower'} {p['name']} -> higher "
                         f"{doc['metric']} (rho {rho:+.2f})")
        t.add_row(p["name"], f"{p['importance']:.1%}", T(bar, style="blue"), direction,
                  p["kind"], str(p["levels"]))
    out.print(t)
    out.print(f"unexplained by main effects (interactions, noise): {doc['unexplained']:.1%}")
    for x in doc.get("interactions", []):
        note = "" if x["replicated"] else "  (one run a cell: interaction and noise together)"
        out.print(f"  interaction {' x '.join(x['params'])}: {x['importance']:.1%}{note}")
    out.print(T(f"method: {doc['method']}", style="dim"))
