"""The ``repro`` command: parse, call one core function, render. Nothing else.

Imports of the core (docker, pydantic, rich) happen inside commands so ``repro --help`` stays
fast. One handler in ``main`` maps ``ReproError`` to exit codes; tracebacks only with --debug.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer import Abort

if TYPE_CHECKING:
    from .record import RunRecord
    from .replay import Grants
    from .runner import Hooks
    from .scheduler import Where
    from .store import Store

app = typer.Typer(
    name="repro", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    help="Reproducible ML training runs: launch in a container, record everything, replay.",
)
image_app = typer.Typer(no_args_is_help=True, help="Build images from images/ recipes.")
app.add_typer(image_app, name="image")

_state = {"debug": False}
_opened: list[Store] = []  # stores this command opened: what their listings skipped is said

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AllowDirtyOpt = Annotated[bool, typer.Option(
    "--allow-dirty", help="Run uncommitted code; the diff is recorded.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse image tags that are not pinned by digest.")]


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"repro {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.",
                                          callback=_print_version, is_eager=True)] = False,
    store: Annotated[str | None, typer.Option(
        "--store", help="Record store URL (overrides REPRO_STORE): a path, sqlite:///PATH or "
                        "postgresql://USER@HOST:PORT/DB.", metavar="URL")] = None,
) -> None:
    _state["debug"] = debug
    if store is not None:
        os.environ["REPRO_STORE"] = store  # every store this process opens, workers too


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The project folder (default: here).")]
    = Path("."),
    script: Annotated[str | None, typer.Option(
        "--script", help="The training script, when repro cannot tell (e.g. src/fit.py), or "
                         "a module: '-m pkg.train'.")]
    = None,
    base: Annotated[str, typer.Option(
        "--base", help="Shipped recipe to build on: python (a venv on Debian) or python-torch "
                       "(plus Debian's CPU torch).")] = "python",
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite files even if edited since repro init wrote them.")] = False,
    deps: Annotated[str | None, typer.Option(
        "--deps", help="Where the dependencies are declared, when not the usual place: a "
                       "requirements file, uv.lock, poetry.lock, pdm.lock, pyproject.toml or "
                       "setup.py (relative to the project).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Make a project runnable with no code edits: writes repro.yaml, an image recipe and a
    hash-pinned lock from its uv.lock, poetry.lock or pdm.lock, else resolved from
    requirements.txt or pyproject.toml."""
    from . import ui
    from .engine import connect
    from .init import init as init_project

    done = init_project(folder, connect(), on_line=ui.progress, force=force, script=script,
                        base=base, deps=deps)
    if json_:
        ui.print_json(done)
        return
    params = ", ".join(f"{k}={v}" for k, v in done["params"].items()) or "none"
    inputs = ", ".join(f"{k} ({v}, mounted there)" for k, v in done["inputs"].items())
    typer.echo(f"project   {done['root']}\ncommand   {' '.join(done['command'])}"
               f"\nparams    {params}  ({done['framework']})"
               f"\nmetrics   {', '.join(done['metrics']) or 'none found in its prints'}"
               f"\npackages  {done['dependencies'] or 'none declared'}"
               f"\ninputs    {inputs or 'none: every file it reads is in git'}"
               + (f"\nexcluded  {', '.join(done['excluded'])}" if done["excluded"] else ""))
    for verb in ("written", "unchanged", "kept", "removed"):
        for rel in done[verb]:
            why = "  (edited since repro init wrote it; --force overwrites)" \
                if verb == "kept" else ""
            typer.echo(f"{verb:<9} {rel}{why}")
    for note in done["notes"]:
        typer.echo(f"note:     {note}")
    typer.echo(f"next:     {done['next']}")


@app.command()
def launch(
    spec: Annotated[Path | None, typer.Argument(
        help="Run spec YAML file (default: repro.yaml here or in a folder above, up to the "
             "git work tree's root; `repro init` writes one).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="Override a param: NAME=VALUE (repeatable).")] = None,
    allow_dirty: AllowDirtyOpt = False,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    sbatch_option: SbatchOpt = None,
    detach: DetachOpt = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="With --executor slurm: print the job script, submit nothing.")]
    = False,
    json_: JsonOpt = False,
) -> None:
    """Run a spec in a container and record everything about it (here, or on a Slurm
    cluster with --executor slurm)."""
    from . import scheduler, ui, views
    from .spec import apply_overrides, default_spec, load_spec
    from .store import open_store

    loaded = apply_overrides(load_spec(spec or default_spec(Path.cwd())), param or [])
    where = _where(executor, partition, account, qos, sbatch_option)
    with _detachable():
        done = scheduler.launch(loaded, where, lambda: _recovered(open_store()),
                                allow_dirty=allow_dirty, strict=strict, hooks=_hooks(quiet),
                                detach=detach, dry_run=dry_run)
    if done.rendered is not None:
        text, doc = done.rendered
        if json_ and doc is not None:
            ui.print_json(doc)
        else:
            typer.echo(text, nl=False)
        return
    record, store = done.record, done.store
    assert record is not None and store is not None
    series = store.runs.steps(record.id)
    if json_:
        ui.print_json(views.record_json(record, series))
    else:
        ui.render_record(record, series)
    if not (detach and str(record.status) == "queued"):  # detached: queued is a success
        _exit_for(record)


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
    from . import ui, views
    from .store.query import name_is, not_experiment, parse_sort, parse_where

    compiled, order = parse_where(where or ""), parse_sort(sort) if sort else None
    if name:
        compiled = compiled.and_(name_is(name))
    if not experiments:
        compiled = compiled.and_(not_experiment())
    store = _existing_store()
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
def sweep(
    spec: Annotated[Path, typer.Argument(help="Run spec YAML file.")],
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", "-g", help="NAME=V1,V2,... values of one param (repeatable).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="Fix a param for every point: NAME=VALUE (repeatable).")] = None,
    random_n: Annotated[int | None, typer.Option(
        "--random", help="Run N points drawn at random from the grid, not all of them.")]
    = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --random draw.")] = 0,
    parallel: Annotated[int, typer.Option("-j", "--parallel", help="Points run at once.")] = 1,
    metric: Annotated[str | None, typer.Option(
        "--metric", "-m", help="Rank the summary by this metric.")] = None,
    minimize: Annotated[bool, typer.Option(
        "--minimize", help="Lower --metric is better (e.g. loss).")] = False,
    allow_dirty: AllowDirtyOpt = False,
    strict: StrictOpt = False,
    executor: ExecutorOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    sbatch_option: SbatchOpt = None,
    detach: DetachOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Launch one recorded run per grid point (sharing a sweep id) and rank them; with
    --executor slurm, as one Slurm job array (-j: at most that many at once)."""
    from . import ui, ui_live
    from .errors import ExitCode, UsageError
    from .spec import apply_overrides, load_spec
    from .store import default_home
    from .sweep import parse_grid, plan, rank, run_sweep

    if not grid:
        raise UsageError("give at least one --grid NAME=V1,V2")
    if parallel < 1 or (random_n is not None and random_n < 1):
        raise UsageError("-j and --random take a positive number")
    loaded = apply_overrides(load_spec(spec), param or [])
    values = parse_grid(loaded, grid)
    points = plan(values, random_n, seed)
    board = ui_live.SweepBoard(len(points), metric)
    plan_doc = {"grid": values, "random": random_n, "seed": seed}
    where = _where(executor, partition, account, qos, sbatch_option)
    if where.scheduler == "slurm":  # as one job array: Slurm's own, not yet the seam's
        from . import slurm
        from .store import open_store
        from .sweep import submit_sweep

        slurm.require_shared_store()
        with board:
            result = submit_sweep(loaded, points, _recovered(open_store()),
                                  slurm.options(where.flags),
                                  parallel=parallel, allow_dirty=allow_dirty, strict=strict,
                                  detach=detach, on_line=board.line, on_done=board.done,
                                  plan_doc=plan_doc)
        if detach:
            if json_:
                ui.print_json({"sweep": result.id, "points": len(result.points),
                               "runs": [p.record.id for p in result.points if p.record]})
            else:
                typer.echo(f"sweep {result.id}: {len(result.points)} points queued")
            return
    elif where.scheduler is not None:
        raise UsageError(f"--executor {where.scheduler}: a sweep runs here or on slurm")
    else:
        with board:
            result = run_sweep(loaded, points, default_home(), parallel=parallel,
                               allow_dirty=allow_dirty, strict=strict, on_line=board.line,
                               on_done=board.done, plan_doc=plan_doc)
    ranked = rank(result.points, metric, minimize)
    if json_:
        ui.print_json({"sweep": result.id, "points": len(result.points),
                       "failed": len(result.failed), "metric": metric,
                       "best": ranked[0]["id"] if ranked and metric else None,
                       "runs": ranked})
    else:
        ui.render_sweep(result.id, ranked, metric, list(values))
    if result.interrupted:
        _exit(ExitCode.INTERRUPTED)
    if result.failed:
        _exit(ExitCode.JOB_FAILED)


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
    from . import ui
    from .analysis.importance import SAMPLE_RUNS, importance_of
    from .analysis.plots import write_plot
    from .store.query import parse_where

    store = _existing_store()
    if store is None:
        from .errors import UsageError

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
    from . import ui
    from .analysis.compare import compare as compare_runs
    from .errors import UsageError

    if len(runs_) < 2:
        raise UsageError("compare needs at least two runs")
    store = _store_of(runs_[0])
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
    from . import ui
    from .errors import UsageError
    from .resolve import check_annotation

    tags = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise UsageError(f"tag {item!r}: expected KEY=VALUE with a key of letters, digits, "
                             "_ - .")
        tags[key] = value
    if not tags and not remove:
        raise UsageError("give KEY=VALUE pairs to set or --remove KEY")
    store = _store_of(run)
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
    from . import ui
    from .errors import UsageError
    from .resolve import check_annotation

    if not text.strip():
        raise UsageError("an empty note says nothing; give the text to attach")
    store = _store_of(run)
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
    from . import ui, views

    store = _store_of(run)
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
        ui.render_record(record, series, replays, tags, notes, diagnoses, authors)


@app.command()
def logs(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    raw: Annotated[bool, typer.Option(
        "--raw", help="Write the bytes as the job wrote them, escape sequences included, "
                      "even to a terminal.")] = False,
) -> None:
    """Print a run's stored output (stdout and stderr, as the job wrote them; on a terminal
    its control characters are shown as escapes, so a job's output cannot drive it)."""
    from . import ui_live
    from .errors import StoreError

    store = _store_of(run)
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


def _output(store: Store, run: str, path: str) -> tuple[RunRecord, str]:
    """A run and the sha256 of one of its outputs (a one-line error listing some others)."""
    from .errors import UsageError

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

    from .errors import StoreError

    store = _store_of(run)
    record, sha = _output(store, run, path)
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
    from . import ui
    from .errors import StoreError
    from .store.artifacts import DigestMismatch

    store = _store_of(run)
    record, sha = _output(store, run, path)
    try:
        store.artifacts.copy_out(sha, out)
    except DigestMismatch:
        raise StoreError(f"run {record.id}: output {path} is corrupt in the store; run "
                         "`repro fsck`") from None
    if json_:
        ui.print_json({"run": record.id, "path": path, "sha256": sha, "file": str(out)})
    else:
        typer.echo(f"{out} ({store.artifacts.size(sha)} bytes, sha256 {sha[:16]}...)")


TolOpt = Annotated[list[str] | None, typer.Option(
    "--tolerance", help="metrics.NAME=ABS: accept metric deltas up to ABS; outputs.PATH=ABS or "
    "outputs.PATH=Nulp: accept an array output (.npy/.npz/.safetensors) whose values differ by "
    "at most ABS, or N ULPs (never 'identical').")]
StrictEnvOpt = Annotated[bool, typer.Option(
    "--strict-env", help="Refuse to replay when CPU/GPU/driver/CUDA differ from the record.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Do not echo job output.")]
NetworkOpt = Annotated[bool, typer.Option(
    "--allow-network", help="Let a run from a bundle have the network it asks for (and pull "
    "its image from the registry it names).")]
SecretOpt = Annotated[list[str] | None, typer.Option(
    "--secret", help="Pass this secret (a variable of this shell) to a run from a bundle "
    "that asks for it (repeatable).")]
InputOpt = Annotated[list[str] | None, typer.Option(
    "--input", help="NAME=PATH: read input NAME from PATH (hash-checked against the record; "
    "repeatable).")]
TimeoutOpt = Annotated[str | None, typer.Option(
    "--timeout", help="Stop the replay after this long (e.g. 30m); default: the recorded "
    "timeout, for a run from a bundle without one 10x its recorded duration, at least 10m.")]

GpusOpt = Annotated[int, typer.Option(
    "--gpus", min=0, help="Give a run from elsewhere up to this many of this machine's GPUs "
    "(default 0: a run that asks for GPUs is refused until granted them).")]


LocalImageOpt = Annotated[bool, typer.Option(
    "--local-image", help="Run a run from elsewhere in this machine's engine's copy of its "
    "image when the run does not bring the image itself (an archive in the store, or this "
    "store's registry); the job can read whatever that image holds.")]


def _grants(allow_network: bool, secret: list[str] | None, input_: list[str] | None,
            timeout: str | None, gpus: int = 0, local_image: bool = False) -> Grants:
    from .errors import UsageError
    from .replay import Grants
    from .units import parse_duration

    inputs = {}
    for item in input_ or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--input {item!r}: expected NAME=PATH")
        inputs[name] = Path(path)
    try:
        seconds = parse_duration(timeout, "--timeout") if timeout else None
    except ValueError as e:
        raise UsageError(f"--timeout {timeout}: {e}") from None
    return Grants(network=allow_network, secrets=tuple(secret or ()), inputs=inputs,
                  timeout_s=seconds, gpus=gpus, local_image=local_image)


@app.command()
def replay(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) to replay.")],
    tolerance: TolOpt = None,
    strict_env: StrictEnvOpt = False,
    allow_network: NetworkOpt = False,
    secret: SecretOpt = None,
    input_: InputOpt = None,
    timeout: TimeoutOpt = None,
    gpus: GpusOpt = 0,
    local_image: LocalImageOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    sbatch_option: SbatchOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a recorded run again from its record alone and compare every output bit for bit
    (here, or on a Slurm node with --executor slurm)."""
    from .engine import connect
    from .replay import parse_tolerances
    from .replay import replay as replay_run
    from .scheduler import replay_elsewhere
    tolerances = parse_tolerances(tolerance or [])
    grants = _grants(allow_network, secret, input_, timeout, gpus, local_image)
    where = _where(executor, partition, account, qos, sbatch_option)
    store = _store_of(run)
    original = store.runs.get(run)
    hooks = _hooks(quiet, _is_foreign(original, store))
    with _detachable():
        rec = replay_run(original, store, connect(), hooks, tolerances, strict_env, grants,
                         replay_elsewhere(where, store, hooks))
    _render_replay(rec, store, json_)
    _exit(_verdict_exit(rec))


@app.command()
def verify(
    target: Annotated[str, typer.Argument(
        help="Run id (or prefix), or an exported bundle folder / manifest.json.")],
    tolerance: TolOpt = None,
    strict_env: StrictEnvOpt = False,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Also write a JUnit XML report here.")] = None,
    allow_network: NetworkOpt = False,
    secret: SecretOpt = None,
    input_: InputOpt = None,
    timeout: TimeoutOpt = None,
    gpus: GpusOpt = 0,
    local_image: LocalImageOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    sbatch_option: SbatchOpt = None,
    json_: JsonOpt = False,
) -> None:
    """CI gate: replay (here, or on a Slurm node with --executor slurm) and exit 0 only if
    the recorded result reproduces.

    Exit codes: 0 identical (or within --tolerance), 8 differs, 9 cannot replay (something
    it needs is missing or corrupt), 11 nothing compared (no outputs, no metrics, logs not
    compared), 2 bad input (a malformed bundle), 4 unknown run, 5 environment (no engine),
    3/6/130 as for launch when the job fails, times out or is interrupted."""
    from .engine import connect
    from .errors import UsageError
    from .replay import parse_tolerances
    from .scheduler import replay_elsewhere
    from .store import open_store
    from .verify import junit as junit_xml
    from .verify import verify as verify_run

    tolerances = parse_tolerances(tolerance or [])
    grants = _grants(allow_network, secret, input_, timeout, gpus, local_image)
    where = _where(executor, partition, account, qos, sbatch_option)
    bundle = _exists(target)
    if not bundle and ("/" in target or target.endswith(".json")):
        raise UsageError(f"{target}: no such bundle folder or manifest")
    store = _recovered(open_store()) if bundle else _store_of(target)
    hooks = _hooks(quiet, bundle or _is_foreign(store.runs.get(target), store))
    with _detachable():
        original, rec = verify_run(target, store, connect(), hooks, tolerances, strict_env,
                                   grants, replay_elsewhere(where, store, hooks))
    if junit is not None:
        junit.write_text(junit_xml(original, rec))
    _render_replay(rec, store, json_)
    _exit(_verdict_exit(rec))


@app.command()
def diagnose(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) to diagnose.")],
    replays: Annotated[int, typer.Option(
        "--replays", "-k", min=1, max=20,
        help="Plain replays first: does the run agree with itself on this host?")] = 2,
    allow_network: NetworkOpt = False,
    secret: SecretOpt = None,
    input_: InputOpt = None,
    timeout: TimeoutOpt = None,
    gpus: GpusOpt = 0,
    local_image: LocalImageOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Say why a run does not reproduce: replay it K times, then with every control on (the
    wall clock frozen, seeds forced, PYTHONHASHSEED fixed, one thread, deterministic GPU
    kernels) and with each control off in turn; name the cause of each differing output,
    where in the file it shows, and the fix to try. Stored with the run (`repro show`, the
    dashboard). Every experiment is a replay recorded in the store.

    Exit codes: 0 diagnosed (whatever it found), 9 cannot replay, 4 unknown run, 5 no
    engine, 130 interrupted."""
    from . import ui
    from .diagnose import diagnose as diagnose_run
    from .engine import connect

    grants = _grants(allow_network, secret, input_, timeout, gpus, local_image)
    store = _store_of(run)
    original = store.runs.get(run)
    doc = diagnose_run(original, store, connect(), (lambda _: None) if quiet else ui.progress,
                       replays, grants)
    if json_:
        ui.print_json(doc)
    else:
        ui.render_diagnosis(doc)


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) to export.")],
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="Write a self-contained bundle (manifest + artifacts) to this new "
        "folder.")] = None,
    max_input_size: Annotated[str | None, typer.Option(
        "--max-input-size", help="Leave inputs larger than this out of the bundle (e.g. 2g); "
        "their path and digest stay in the manifest.")] = None,
    max_output_size: Annotated[str | None, typer.Option(
        "--max-output-size", help="Leave outputs and logs larger than this out of the bundle "
        "(e.g. 1g); their digests stay in the manifest.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Export a run's manifest (to stdout) or a portable bundle that `repro verify` replays
    on a machine that never saw the run."""
    from . import ui
    from .bundle import export_bundle, manifest_of, needed_artifacts
    from .engine import connect
    from .errors import UsageError
    from .units import parse_size

    store = _store_of(run)
    record = store.runs.get(run)
    if bundle is None:
        manifest = manifest_of(record, store)
        manifest["artifacts"] = {h: {**m, "bundled": False}
                                 for h, m in needed_artifacts(record, store).items()}
        ui.print_json(manifest)
        return
    limits = {}
    for option, value in (("--max-input-size", max_input_size),
                          ("--max-output-size", max_output_size)):
        try:
            limits[option] = parse_size(value, option) if value else None
        except ValueError as e:
            raise UsageError(f"{option} {value}: {e}") from None
    manifest = export_bundle(record, store, connect(), bundle, limits["--max-input-size"],
                             ui.progress, limits["--max-output-size"])
    summary = {"run": record.id, "bundle": str(bundle), "artifacts": manifest["artifacts"]}
    if json_:
        ui.print_json(summary)
    else:
        size = sum(m["size"] or 0 for m in manifest["artifacts"].values() if m["bundled"])
        typer.echo(f"exported run {record.id} to {bundle} ({size >> 20} MiB); verify it "
                   f"anywhere with: repro verify {bundle}")


@app.command("import")
def import_(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder or its manifest.json.")],
    json_: JsonOpt = False,
) -> None:
    """Import an exported bundle's run into this store without replaying it (validated and
    hash-checked; `repro verify BUNDLE` imports and replays)."""
    from . import ui
    from .bundle import import_bundle
    from .errors import UsageError
    from .store import open_store

    if not bundle.exists():
        raise UsageError(f"{bundle}: no such bundle folder or manifest")
    store = _recovered(open_store())
    record = import_bundle(bundle, store, ui.progress)
    origin = store.runs.origin(record.id)
    absent = len(origin["absent"]) if origin else 0
    if json_:
        ui.print_json({"id": record.id, "name": record.name, "status": str(record.status),
                       "origin": origin})
    else:
        typer.echo(f"imported run {record.id} ({record.name}, {record.status})"
                   + (f"; {absent} artifact(s) did not come with it" if absent else ""))


@image_app.command("build")
def image_build(
    folder: Annotated[Path, typer.Argument(
        help="Recipe folder, e.g. images/train, or a shipped recipe: python, python-torch.")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if built.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Build an image recipe (and its base) into the local engine; a no-op when up to date."""
    from . import ui
    from .engine import connect
    from .engine.images import build
    from .engine.recipe import find
    from .store import open_store

    folder = find(str(folder), Path.cwd()) or folder
    built = build(folder, connect(), on_line=ui.progress, force=force, store=open_store())
    doc = {"id": built.id, "tag": built.tag, "recipe": built.recipe,
           "recipe_digest": built.recipe_digest, "reused": built.reused}
    if json_:
        ui.print_json(doc)
    else:
        typer.echo(f"{built.tag}  {built.id}" + ("  (up to date)" if built.reused else ""))


@image_app.command("freeze")
def image_freeze(
    image: Annotated[str, typer.Argument(
        help="Image id or reference, e.g. repro/PROJECT/train:latest.")],
    json_: JsonOpt = False,
) -> None:
    """Print the lock of what an image has installed (NAME==VERSION lines), e.g. to pin a
    distribution's own builds: `repro image freeze IMAGE > requirements.lock`."""
    from . import ui
    from .engine import connect
    from .engine.images import freeze

    lines = freeze(image, connect())
    if json_:
        ui.print_json({"image": image, "lock": lines})
    else:
        typer.echo("\n".join(lines))


@image_app.command("push")
def image_push(
    image: Annotated[str, typer.Argument(
        help="Image id or reference, e.g. repro/PROJECT/train:latest.")],
    repository: Annotated[str, typer.Argument(help="REGISTRY/NAME to push to.")],
    tag: Annotated[str | None, typer.Option("--tag", help="Tag (default: id prefix).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Push an image to a registry and record its repository digest for replays."""
    from . import ui
    from .engine import connect
    from .errors import ImageError
    from .hashing import short, shown
    from .store import open_store

    engine = connect()
    info = engine.image(image)
    if info is None:
        raise ImageError(f"image {image} is not in the engine; build it with `repro image "
                         "build` or pull it first")
    digest = engine.push(info["id"], repository, tag or short(info["id"]), ui.progress)
    open_store().runs.add_push(info["id"], repository, digest)
    pinned = f"{repository}@{digest}"
    if json_:
        ui.print_json({"image": info["id"], "repository": repository, "digest": digest,
                       "ref": pinned})
    else:
        typer.echo(f"pushed {shown(info['id'])}... as {pinned}\nuse it in a spec as: "
                   f"image: {{ref: {pinned}}}")


@app.command()
def fsck(json_: JsonOpt = False) -> None:
    """Check that every artifact a run refers to exists and still matches its sha256
    (exit 10 when one does not)."""
    from . import ui
    from .errors import ExitCode
    from .fsck import fsck as check

    store = _existing_store()
    if store is None:
        doc: dict[str, Any] = {"runs": 0, "artifacts": 0, "problems": [], "not_carried": 0,
                               "ok": True}
    else:
        doc = check(store, ui.progress if not json_ else (lambda _: None))
    if json_:
        ui.print_json(doc)
    else:
        typer.echo(f"checked {doc['artifacts']} artifacts of {doc['runs']} runs: "
                   + ("all intact" if doc["ok"] else f"{len(doc['problems'])} problem(s)")
                   + (f" ({doc['not_carried']} left out of the bundles runs came in)"
                      if doc["not_carried"] else ""))
    if not doc["ok"]:
        raise typer.Exit(int(ExitCode.CORRUPT))


@app.command()
def cite(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix) in the team store.")],
    metric: Annotated[str | None, typer.Option("--metric", help="The number being shared.")]
    = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="The card as Markdown, for a "
                                                              "paper, a PR or a wiki.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Register a result before sharing it: prints its card (the number, who, when, every
    content address, the last verdict, the command that re-proves it) and marks the run
    published, so it is never removed."""
    from . import ui
    from .cite import card
    from .cite import markdown as as_markdown

    done = card(_store_of(run), run, metric)
    if json_:
        ui.print_json(done)
    else:
        typer.echo(as_markdown(done), nl=False)


TeamStoreOpt = Annotated[str | None, typer.Option(
    help="The team's record store URL (default: REPRO_TEAM_STORE).", metavar="URL")]
TeamArtifactsOpt = Annotated[str | None, typer.Option(
    help="The team's artifact store: a path, file:///PATH or oci://HOST/REPO (default: "
    "REPRO_TEAM_ARTIFACTS).", metavar="URL")]
WhereOpt = Annotated[str | None, typer.Option(
    "--where", "-w", help="Also every run matching this filter (the `repro runs` language).")]


@app.command()
def push(
    runs_: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Run ids (or unique prefixes) in this machine's store.")]
    = None,
    where: WhereOpt = None,
    to: TeamStoreOpt = None,
    to_artifacts: TeamArtifactsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Copy finished runs from this machine's store into the team's: records, series, tags,
    notes, artifacts (hash-verified) and, to a registry, the image by digest. Idempotent;
    after a kill, run it again."""
    _sync("push", runs_ or [], where, to, to_artifacts, json_)


@app.command()
def pull(
    runs_: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Run ids (or unique prefixes) in the team's store.")] = None,
    where: WhereOpt = None,
    from_: Annotated[str | None, typer.Option(
        "--from", help="The team's record store URL (default: REPRO_TEAM_STORE).",
        metavar="URL")] = None,
    from_artifacts: TeamArtifactsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Copy runs from the team's store into this machine's, with everything a replay needs,
    for offline work. Idempotent; after a kill, run it again."""
    _sync("pull", runs_ or [], where, from_, from_artifacts, json_)


def _sync(verb: str, refs: list[str], where: str | None, team_url: str | None,
          team_artifacts: str | None, json_: bool) -> None:
    from . import sync, ui, ui_live
    from .engine import connect
    from .errors import UsageError
    from .store import open_store, open_team
    from .store.db import safe_url
    from .store.query import parse_where
    from .units import human_size

    if not refs and where is None:
        raise UsageError(f"name the runs to {verb} (RUN... or --where EXPR)")
    flag = "--to" if verb == "push" else "--from"
    team_url = team_url or os.environ.get("REPRO_TEAM_STORE", "").strip()
    team_artifacts = team_artifacts or os.environ.get("REPRO_TEAM_ARTIFACTS", "").strip()
    if not team_url or not team_artifacts:
        raise UsageError(f"repro {verb} needs the team's store: set REPRO_TEAM_STORE and "
                         f"REPRO_TEAM_ARTIFACTS (or pass {flag} URL and {flag}-artifacts URL)")
    compiled = parse_where(where) if where is not None else None
    local = _recovered(open_store())
    team = open_team(local, team_url, team_artifacts)
    _opened.append(team)
    here = sync.Side(local, "this store", safe_url(local.runs.place))
    there = sync.Side(team, "the team store", safe_url(team_url))
    src, dst = (here, there) if verb == "push" else (there, here)
    try:
        records = sync.select(src, refs, compiled)
        with ui_live.TransferBar(verb, sync.plan_bytes(src, dst, records)) as bar:
            moved = sync.transfer(src, dst, records, verb,
                                  sync.image_pusher(connect) if verb == "push" else None, bar)
    finally:
        team.runs.close()
    for m in moved:
        for w in m.warnings:
            ui.progress(f"warning: {w}")
    if json_:
        ui.print_json({"to" if verb == "push" else "from": there.where,
                       "runs": [m.doc() for m in moved]})
        return
    new = sum(m.state == "copied" for m in moved)
    for m in moved:
        typer.echo(f"{m.run} {'copied' if m.state == 'copied' else 'already there'}"
                   + (f", {m.artifacts} artifact(s), {human_size(m.bytes)}" if m.artifacts
                      else "") + (f", image {m.image}" if m.image else ""))
    typer.echo(f"{verb}ed {len(moved)} run(s) {'to' if verb == 'push' else 'from'} "
               f"{there.where}: {new} new, {len(moved) - new} already there, "
               f"{human_size(sum(m.bytes for m in moved))} moved")


@app.command("node-run", hidden=True)
def node_run(run: Annotated[str, typer.Argument(help="The queued run's id.")]) -> None:
    """What a Slurm job runs on its node: the queued run, from the shared stores, by this
    node's engine."""
    from . import ui
    from .engine import connect
    from .slurm import run_on_node
    from .store import open_store

    store = open_store()
    record = run_on_node(run, store, connect(), _hooks(False))
    ui.progress(f"run {record.id} {record.status}" + (f": {record.reason}" if record.reason
                                                       else ""))
    _exit_for(record)


@app.command("fetch", hidden=True)
def fetch(
    run: Annotated[str, typer.Argument(help="Run id.")],
    into: Annotated[Path, typer.Option("--into", help="Folder to fill.")],
) -> None:
    """What a Kubernetes Job's init container runs: the run's code, inputs, lock and repro's
    runtime into a folder, each artifact hash-checked."""
    from . import k8s, ui
    from .store import open_store

    store = open_store()
    written = k8s.fetch_into(store.runs.get(run), store, into)
    ui.progress(f"fetched {', '.join(written)} into {into}")


@app.command("wait")
def wait_(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix) of a queued or "
                                            "running run.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not echo job output.")]
    = False,
    json_: JsonOpt = False,
) -> None:
    """Follow a run submitted to Slurm until it ends (its log, its status, Slurm's endings);
    exits as `launch` would have."""
    from . import scheduler, ui, views

    store = _store_of(run)
    record = store.runs.get(run)
    if not record.status.terminal:
        with _detachable():
            record = scheduler.follow(store, record, _hooks(quiet))
    if json_:
        ui.print_json(views.record_json(record, store.runs.steps(record.id)))
    else:
        ui.render_record(record, store.runs.steps(record.id))
    _exit_for(record)


@app.command()
def cancel(
    runs_: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Runs submitted to Slurm.")] = None,
    sweep_: Annotated[str | None, typer.Option("--sweep", help="Every unfinished run of "
                                                               "this sweep.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Stop runs submitted to Slurm (scancel): a running one is stopped by its node and
    recorded interrupted, a queued one is recorded interrupted here."""
    from . import scheduler, ui
    from .errors import UsageError
    from .store import open_store
    from .store.query import sweep_is

    if not runs_ and not sweep_:
        raise UsageError("name the runs to cancel (RUN... or --sweep ID)")
    store = open_store()
    records = [store.runs.get(r) for r in runs_ or []]
    if sweep_:
        records += [r for r in store.runs.query(sweep_is(sweep_), None, None)
                    if not r.status.terminal]
    done = scheduler.cancel(store, records)
    if json_:
        ui.print_json([{"id": r.id, "status": str(r.status), "reason": r.reason} for r in done])
    else:
        for r in done:
            typer.echo(f"{r.id} {r.status}" + (f": {r.reason}" if r.reason else ""))


@app.command()
def rm(
    runs_: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run ids (or unique "
                                               "prefixes) to remove.")],
    json_: JsonOpt = False,
) -> None:
    """Remove runs from the store: records, metrics, tags, notes, diagnoses and the replays
    those diagnoses ran (a run still running is refused; artifacts stay, other runs may
    share them)."""
    from . import ui
    from .errors import ReproError, UsageError
    from .store.query import experiments_of

    store = _store_of(runs_[0])
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


@app.command()
def gc(json_: JsonOpt = False) -> None:
    """Recover runs whose repro process died (stop their containers, record them lost) and
    remove temp files of interrupted writes."""
    from . import ui
    from .engine import connect
    from .recovery import collect_garbage

    store = _existing_store()
    doc = collect_garbage(store, connect(), ui.progress) if store else {
        "recovered": [], "stray_containers": [], "removed": []}
    if json_:
        ui.print_json(doc)
    else:
        typer.echo(f"recovered {len(doc['recovered'])} run(s), removed "
                   f"{len(doc['stray_containers'])} stray container(s) and "
                   f"{len(doc['removed'])} stale file(s)")


@app.command("ui")
def ui_serve(
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to bind (IPv4 or IPv6).")]
    = "127.0.0.1",
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Allow a non-loopback --host (needs a token).")] = False,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File whose first line is the secret every request must carry "
        "(?token= once, then a cookie); or set REPRO_UI_TOKEN. At least 16 characters.")]
    = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", help="Also answer requests addressed to this host name "
        "(repeatable).")] = None,
) -> None:
    """Serve the dashboard (runs, run pages, comparisons, sweeps, importance) on localhost."""
    from . import settings
    from .store import default_home, open_store
    from .web import check_bind, make_server, read_token

    token = read_token(token_file, settings.ui_token())
    check_bind(host, allow_remote, token)
    home = default_home()
    open_store(home).close()  # create/migrate before serving
    try:
        server = make_server(home, host, port, token, set(allow_host or ()))
    except OSError as e:
        from .errors import UsageError

        raise UsageError(f"--host {host} --port {port}: cannot listen there ({e.strerror})"
                         ) from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.server_address[1]}/"
    typer.echo(f"repro ui: serving {home} at {url}" + (" (add ?token=<your token> once)"
                                                        if token else "")
               + " (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def doctor(
    images: Annotated[Path, typer.Option("--images", help="Recipe folder to check.")]
    = Path("images"),
    json_: JsonOpt = False,
) -> None:
    """Check Docker, debootstrap, images, GPUs and the store."""
    from . import ui
    from .doctor import check
    from .engine import connect
    from .errors import ExitCode

    checks = check(connect(), images)
    if json_:
        ui.print_json({"ok": all(c["ok"] for c in checks), "checks": checks})
    else:
        ui.render_doctor(checks)
    if not all(c["ok"] for c in checks):
        _exit(ExitCode.ENVIRONMENT)


def _existing_store() -> Store | None:
    """The store, without creating one as a side effect of a read-only command."""
    from .store import default_home, open_store

    home = default_home()
    if (home / "repro.db").exists() or os.environ.get("REPRO_STORE"):
        return _recovered(open_store(home))
    return None


def _store_of(run: str) -> Store:
    """The store that should hold ``run`` (an error naming the folder when there is none)."""
    from .errors import RunNotFound
    from .store import default_home

    store = _existing_store()
    if store is None:
        raise RunNotFound(f"no run {run!r} in {default_home()}: there is no store there yet; "
                          "cd to the folder you launched from or set REPRO_HOME")
    return store


def _recovered(store: Store) -> Store:
    """Finish runs whose repro process died (found by every command that opens the store;
    costs one indexed query when there are none)."""
    from . import ui
    from .errors import EngineUnavailable
    from .recovery import orphans, recover

    _opened.append(store)
    lost = orphans(store)
    if lost:
        from .engine import connect

        try:
            recover(store, connect(), ui.progress)
        except EngineUnavailable as e:
            ui.progress(f"warning: {len(lost)} run(s) whose repro process died are not "
                        f"recovered yet: {e}")
    return store


ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", help="Where the run goes: local (this machine's engine, the default; "
    "docker and podman name it too), slurm, or k8s (--dry-run only: renders a batch/v1 Job) "
    "(default: REPRO_EXECUTOR).",
    metavar="local|slurm|k8s")]
PartitionOpt = Annotated[str | None, typer.Option(
    help="Slurm partition (default: REPRO_SLURM_PARTITION).")]
AccountOpt = Annotated[str | None, typer.Option(
    help="Slurm account (default: REPRO_SLURM_ACCOUNT).")]
QosOpt = Annotated[str | None, typer.Option(help="Slurm QOS (default: REPRO_SLURM_QOS).")]
SbatchOpt = Annotated[list[str] | None, typer.Option(
    "--sbatch-option", help="One more sbatch option, e.g. --sbatch-option=--exclusive "
    "(repeatable; REPRO_SLURM_OPTIONS adds its own, space-separated).")]
DetachOpt = Annotated[bool, typer.Option(
    "--detach", help="With --executor slurm: return once the job is queued (`repro wait "
    "RUN` follows it later).")]


def _where(executor: str | None, partition: str | None, account: str | None,
           qos: str | None, extra: list[str] | None) -> Where:
    from .scheduler import where

    return where(executor, partition=partition, account=account, qos=qos, extra=extra)


@contextlib.contextmanager
def _detachable() -> Iterator[None]:
    """Ctrl-C while following a submitted run: it goes on; say how to reach it, exit 130."""
    from . import ui
    from .scheduler import Detached

    try:
        yield
    except Detached as e:
        ui.progress(str(e))
        raise typer.Exit(int(e.exit_code)) from None


def _hooks(quiet: bool, foreign: bool = False) -> Hooks:
    """``foreign``: the job is a run from elsewhere: its output reaches a terminal inert."""
    from . import ui, ui_live
    from .runner import Hooks

    if quiet:  # warnings only: no trace, no job output, no live line
        return Hooks(on_line=lambda line: ui.progress(line) if line.startswith("warning:")
                     else None)
    live = ui_live.LiveStatus(inert=foreign)
    return Hooks(on_line=ui.progress, on_log=live.log, on_metrics=live.metrics,
                 on_end=live.end)


def _exists(path: str) -> bool:
    """Is there a file or folder at ``path`` (a name too long to be one is not)?"""
    try:
        return Path(path).exists()
    except OSError:
        return False


def _is_foreign(record: RunRecord, store: Store) -> bool:
    from .replay import foreign

    return foreign(record, store)


def _render_replay(rec: RunRecord, store: Store, json_: bool) -> None:
    from . import ui, views

    series = store.runs.steps(rec.id)
    if json_:
        ui.print_json(views.record_json(rec, series))
    else:
        ui.render_verdict(rec)


def _verdict_exit(rec: RunRecord) -> int:
    from .errors import VERDICT_EXIT

    return VERDICT_EXIT[(rec.verdict or {}).get("result", "differs")]


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(int(code))


def _exit_for(record: RunRecord) -> None:
    _exit(record.status.exit_code)


def main() -> None:
    """Entry point: usage errors exit 2, repro's own errors are one line on stderr and their
    documented exit code; with --json, stdout also gets one JSON error document (scripts read
    stdout only)."""
    from typer._click.exceptions import ClickException

    from .errors import ExitCode, ReproError

    json_ = "--json" in sys.argv[1:]
    try:
        try:
            code = app(prog_name="repro", standalone_mode=False)
        finally:
            _say_damaged()
    except ReproError as e:
        if _state["debug"]:
            import traceback

            traceback.print_exc()
        _fail(str(e), int(e.exit_code), type(e).__name__, json_)
    except ClickException as e:  # a bad option or argument: click's own message
        e.show()
        _fail(e.format_message(), e.exit_code, "UsageError", json_, echo=False)
    except (KeyboardInterrupt, Abort):
        _fail("interrupted", int(ExitCode.INTERRUPTED), "Interrupted", json_)
    except Exception as e:
        if _state["debug"]:
            raise
        _fail(f"internal error: {type(e).__name__}: {e}; rerun with --debug and report it",
              int(ExitCode.INTERNAL), "InternalError", json_, prefix=False)
    sys.exit(code if isinstance(code, int) else 0)


def _say_damaged() -> None:
    """One warning per damaged row a listing skipped (a member's malformed row must not
    break the team's `repro runs`; it names the row and who may remove it)."""
    from . import ui

    said = set()
    for store in _opened:
        for run_id, why in store.runs.damaged.items():
            if run_id not in said:
                said.add(run_id)
                ui.progress(f"warning: {why}")


def _fail(message: str, code: int, kind: str, json_: bool, echo: bool = True,
          prefix: bool = True) -> NoReturn:
    from . import ui

    if echo:
        if prefix:
            ui.error(message)
        else:
            sys.stderr.write(ui.printable(message) + "\n")
    if json_:
        ui.print_json({"error": {"kind": kind, "message": message, "exit_code": code}})
    sys.exit(code)


if __name__ == "__main__":
    main()
