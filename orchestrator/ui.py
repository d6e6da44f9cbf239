"""Static terminal output: rich tables for people, one JSON document for scripts. One run in
detail (its record, a verdict, a diagnosis) is ``ui_run.py``'s; the widgets that redraw
while work goes on are ``ui_live.py``'s.

Progress and job logs go to stderr; the result (a table or ``--json``) goes to stdout. rich is
imported only when a table is drawn: the ``--json`` launch path does not pay for it.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from .record import RunRecord, RunStatus
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


def preload_tables(_job_id: str = "") -> None:
    """Import rich's console and tables on a thread while a job runs (the launch waits on the
    engine then): drawing the record afterwards no longer pays their 20 ms. Started only once
    the launch's own imports are done, so the two never wait on each other's modules."""
    import threading

    def load() -> None:
        try:
            import rich.console
            import rich.table  # noqa: F401
        except Exception:  # the table's own import, later, says what is wrong
            pass

    threading.Thread(target=load, name="preload-tables", daemon=True).start()


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
VERDICT_STYLE = {"identical": "bold green", "within-tolerance": "bold yellow",
                 "differs": "bold red", "nothing-compared": "bold magenta",
                 "identical-prefix": "bold green"}
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
            result = (r.verdict.result if r.verdict else str(r.status))
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


def render_doctor(checks: list[dict]) -> None:

    out = _out()
    for c in checks:
        mark = T("ok  ", style="green") if c["ok"] else T("FAIL", style="bold red")
        out.print(mark + T(f"  {c['name']}: {c['detail']}"))
        if not c["ok"] and c.get("fix"):
            out.print(T(f"        fix: {c['fix']}", style="yellow"))


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
