"""Commands that read and annotate runs in the store: `runs`, `show`, `logs`, `cat`,
`get`, `compare`, `importance`, `tag`, `note`, `rm`."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..record import RunRecord
    from ..store import Store

from .base import (
    JsonOpt,
    app,
    existing_store,
    store_of,
)


@app.command()
def runs(
    where: Annotated[str | None, typer.Option(
        "--where", "-w", help="Filter, e.g. \"params.lr < 0.1 and metrics.acc >= 0.9\".")] = None,
    sort: Annotated[str | None, typer.Option(
        "--sort", "-s", help="Sort key, e.g. -metrics.acc (descending); default -created_at.")]
    = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most N runs (0: all).")] = 50,
    name: Annotated[str | None, typer.Option("--name", help="Only runs of this spec name.")]
    = None,
    csv_: Annotated[bool, typer.Option("--csv", help="CSV with flattened params, metrics, "
                                       "tags.")] = False,
    experiments: Annotated[bool, typer.Option(
        "--experiments", help="Also list the replays `repro diagnose` ran as experiments "
        "(left out by default).")] = False,
    json_: JsonOpt = False,
) -> None:
    """List and query recorded runs (newest first), as a table, JSON or CSV."""
    from .. import ui, views
    from ..store.query import name_is, not_experiment, parse_sort, parse_where

    compiled, order = parse_where(where or ""), parse_sort(sort) if sort else None
    if name:
        compiled = compiled.and_(name_is(name))
    if not experiments:
        compiled = compiled.and_(not_experiment())
    store = existing_store()
    records = store.runs.query(compiled, order, limit or None) if store else []
    tags = store.runs.tags_of([r.id for r in records]) if store else {}
    published = store.runs.published_of([r.id for r in records]) if store else set()
    authors = store.runs.authors([r.id for r in records]) if store else {}
    rows = [views.flat_row(r, tags.get(r.id, {}), r.id in published, authors.get(r.id))
            for r in records]
    if json_:
        ui.print_json(rows)
    elif csv_:
        ui.print_csv(rows)
    else:
        ui.render_runs(records, tags, published)
        total = store.runs.query_count(compiled) if store else 0
        if total > len(records):
            ui.progress(f"showing {len(records)} of {total} runs; --limit 0 shows all")


@app.command()
def importance(
    metric: Annotated[str, typer.Option("--metric", "-m", help="The metric to explain.")],
    where: Annotated[str | None, typer.Option(
        "--where", "-w", help="Which runs (same language as `repro runs --where`).")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also draw it: FILE.png or FILE.html.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Estimate how much each parameter explains a metric over the selected runs."""
    from .. import ui
    from ..analysis.importance import SAMPLE_RUNS, importance_of
    from ..analysis.plots import write_plot
    from ..store.query import parse_where

    store = existing_store()
    if store is None:
        from ..errors import UsageError

        raise UsageError("no runs recorded here yet; launch or sweep first")
    samples, total = store.runs.importance_samples(parse_where(where or ""), metric,
                                                   SAMPLE_RUNS)
    doc = importance_of(metric, samples, total)
    if plot is not None:
        write_plot(doc, plot)
    if json_:
        ui.print_json({k: v for k, v in doc.items()} | {"plot": str(plot) if plot else None})
    else:
        ui.render_importance(doc)
        if plot is not None:
            ui.progress(f"plot written to {plot}")


@app.command()
def compare(
    runs_: Annotated[list[str], typer.Argument(metavar="RUN...", help="Two or more run ids.")],
    show_all: Annotated[bool, typer.Option("--all", help="Show identical rows too.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Compare runs side by side: params, metrics, outputs, image, packages, host and GPUs."""
    from .. import ui
    from ..analysis.compare import compare as compare_runs
    from ..errors import UsageError

    if len(runs_) < 2:
        raise UsageError("compare needs at least two runs")
    store = store_of(runs_[0])
    records = [store.runs.get(r) for r in runs_]
    doc = compare_runs(records, {r.id: store.runs.steps(r.id) for r in records},
                       store.artifacts.local_path)
    if json_:
        ui.print_json(doc)
    else:
        ui.render_compare(doc, show_all)


@app.command()
def tag(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix).")],
    pairs: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE pairs to set.")] = None,
    remove: Annotated[list[str] | None, typer.Option(
        "--remove", "-r", help="Remove this tag key (repeatable).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Set or remove tags on a run; tags are shown by runs/show and queryable as tags.KEY."""
    from .. import ui
    from ..errors import UsageError
    from ..resolve import check_annotation

    tags = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise UsageError(f"tag {item!r}: expected KEY=VALUE with a key of letters, digits, "
                             "_ - .")
        tags[key] = value
    if not tags and not remove:
        raise UsageError("give KEY=VALUE pairs to set or --remove KEY")
    store = store_of(run)
    record = store.runs.get(run)
    check_annotation(record, tags.values())
    store.runs.set_tags(record.id, tags, remove or [])
    current = store.runs.tags(record.id)
    if json_:
        ui.print_json({"id": record.id, "tags": current})
    else:
        typer.echo(ui.printable(f"{record.id}  " + ("  ".join(
            f"{k}={v}" for k, v in current.items()) or "(no tags)")))


@app.command()
def note(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix).")],
    text: Annotated[str, typer.Argument(help="The note, e.g. \"diverged: LR too high\".")],
    json_: JsonOpt = False,
) -> None:
    """Attach a note to a run (kept with a timestamp; searchable with note ~ 'text')."""
    from .. import ui
    from ..errors import UsageError
    from ..resolve import check_annotation

    if not text.strip():
        raise UsageError("an empty note says nothing; give the text to attach")
    store = store_of(run)
    record = store.runs.get(run)
    check_annotation(record, [text])
    store.runs.add_note(record.id, text.strip())
    notes = store.runs.notes(record.id)
    if json_:
        ui.print_json({"id": record.id, "notes": [{"at": a, "text": t} for a, t in notes]})
    else:
        typer.echo(ui.printable(f"{record.id}: {len(notes)} note(s); latest: {notes[-1][1]}"))


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    json_: JsonOpt = False,
) -> None:
    """Show one run's full record."""
    from .. import ui, ui_run, views

    store = store_of(run)
    record = store.runs.get(run)
    series = store.runs.steps(record.id)
    replays, tags = store.runs.replays_of(record.id), store.runs.tags(record.id)
    notes, diagnoses = store.runs.notes(record.id), store.runs.diagnoses(record.id)
    authors = store.runs.authors([record.id, *(r.id for r in replays)])
    if json_:
        ui.print_json(views.record_json(
            record, series, replays, tags, notes,
            store.runs.pushes(record.resolved.image.digest), store.runs.published(record.id),
            diagnoses, authors))
    else:
        ui_run.render_record(record, series, replays, tags, notes, diagnoses, authors)


@app.command()
def logs(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    raw: Annotated[bool, typer.Option(
        "--raw", help="Write the bytes as the job wrote them, escape sequences included, "
                      "even to a terminal.")] = False,
) -> None:
    """Print a run's stored output (stdout and stderr, as the job wrote them; on a terminal
    its control characters are shown as escapes, so a job's output cannot drive it)."""
    from .. import ui_live
    from ..errors import StoreError

    store = store_of(run)
    record = store.runs.get(run)
    write = sys.stdout.buffer.write if raw or not sys.stdout.isatty() else ui_live.inert_writer()
    if record.logs is None:
        live = store.log_path(record.id)
        if not live.exists():
            raise StoreError(f"run {record.id} has no stored logs")
        write(live.read_bytes())
        return
    for chunk in store.artifacts.chunks(record.logs.sha256):
        write(chunk)
    write(b"")


def output_file(store: Store, run: str, path: str) -> tuple[RunRecord, str]:
    """A run and the sha256 of one of its outputs (a one-line error listing some others)."""
    from ..errors import UsageError

    record = store.runs.get(run)
    ref = record.outputs.get(path.lstrip("/").removeprefix("repro/outputs/"))
    if ref is None:
        some = ", ".join(sorted(record.outputs)[:5]) or "none"
        raise UsageError(f"run {record.id} has no output {path!r} (outputs: {some}"
                         f"{', ...' if len(record.outputs) > 5 else ''})")
    return record, ref.sha256


@app.command()
def cat(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    path: Annotated[str, typer.Argument(help="An output's path, e.g. metrics.json.")],
) -> None:
    """Print one of a run's stored outputs (checked against its sha256 as it is read)."""
    import hashlib

    from ..errors import StoreError

    store = store_of(run)
    record, sha = output_file(store, run, path)
    h = hashlib.sha256()
    for chunk in store.artifacts.chunks(sha):
        h.update(chunk)
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    if h.hexdigest() != sha:
        raise StoreError(f"run {record.id}: output {path} is corrupt in the store (its bytes "
                         "no longer match their sha256); run `repro fsck`")


@app.command()
def get(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    path: Annotated[str, typer.Argument(help="An output's path, e.g. weights/w1.npy.")],
    out: Annotated[Path, typer.Option("-o", "--output", help="Where to write it.")],
    json_: JsonOpt = False,
) -> None:
    """Copy one of a run's stored outputs to a file (hash-checked; nothing is left on a
    mismatch)."""
    from .. import ui
    from ..errors import StoreError
    from ..store.artifacts import DigestMismatch

    store = store_of(run)
    record, sha = output_file(store, run, path)
    try:
        store.artifacts.copy_out(sha, out)
    except DigestMismatch:
        raise StoreError(f"run {record.id}: output {path} is corrupt in the store; run "
                         "`repro fsck`") from None
    if json_:
        ui.print_json({"run": record.id, "path": path, "sha256": sha, "file": str(out)})
    else:
        typer.echo(f"{out} ({store.artifacts.size(sha)} bytes, sha256 {sha[:16]}...)")


@app.command()
def rm(
    runs_: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run ids (or unique "
                                               "prefixes) to remove.")],
    json_: JsonOpt = False,
) -> None:
    """Remove runs from the store: records, metrics, tags, notes, diagnoses and the replays
    those diagnoses ran (a run still running is refused; artifacts stay, other runs may
    share them)."""
    from .. import ui
    from ..errors import ReproError, UsageError
    from ..store.query import experiments_of

    store = store_of(runs_[0])
    removed: list[str] = []
    kept: list[str] = []
    for ref in runs_:
        try:
            record = store.runs.get(ref)
        except ReproError:
            if not store.runs.exists(ref):  # a damaged record is removed by its exact id
                raise
            run_id = ref
        else:
            if not record.status.terminal:
                raise UsageError(f"run {record.id} is {record.status}; wait for it (or `repro "
                                 "gc` if its process died) before removing it")
            run_id = record.id
        for experiment in store.runs.query_ids(experiments_of(run_id)):  # its diagnoses'
            try:
                if not store.runs.get(experiment).status.terminal:
                    raise UsageError("it is still running")
                store.runs.remove(experiment)
                removed.append(experiment)
            except ReproError as e:  # another member's, or still running
                kept.append(experiment)
                ui.progress(f"kept experiment replay {experiment}: {e}")
        store.runs.remove(run_id)
        removed.append(run_id)
    if json_:
        ui.print_json({"removed": removed, **({"kept": kept} if kept else {})})
    else:
        typer.echo(f"removed {len(removed)} run(s): {', '.join(ui.printable(r) for r in removed)}")
