"""Commands that start runs: `repro init`, `repro launch`, `repro sweep`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from .base import (
    AccountOpt,
    AllowDirtyOpt,
    DetachOpt,
    ExecutorOpt,
    JsonOpt,
    PartitionOpt,
    QosOpt,
    QuietOpt,
    SbatchOpt,
    StrictOpt,
    app,
    detachable,
    exit_for,
    exit_with,
    recovered,
    run_hooks,
    where_of,
)


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
    from .. import ui
    from ..engine import connect
    from ..init import init as init_project

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
    from .. import scheduler, ui, ui_run, views
    from ..params import apply_overrides
    from ..spec import default_spec, load_spec
    from ..store import open_store

    loaded = apply_overrides(load_spec(spec or default_spec(Path.cwd())), param or [])
    where = where_of(executor, partition, account, qos, sbatch_option)
    with detachable():
        done = scheduler.launch(loaded, where, lambda: recovered(open_store()),
                                allow_dirty=allow_dirty, strict=strict,
                                hooks=run_hooks(quiet, table=not json_),
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
        ui_run.render_record(record, series)
    if not (detach and str(record.status) == "queued"):  # detached: queued is a success
        exit_for(record)


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
    from .. import ui, ui_live
    from ..errors import ExitCode, UsageError
    from ..params import apply_overrides
    from ..spec import load_spec
    from ..store import default_home, open_store
    from ..sweep import launch as launch_sweep
    from ..sweep import parse_grid, plan, rank

    if not grid:
        raise UsageError("give at least one --grid NAME=V1,V2")
    if parallel < 1 or (random_n is not None and random_n < 1):
        raise UsageError("-j and --random take a positive number")
    loaded = apply_overrides(load_spec(spec), param or [])
    values = parse_grid(loaded, grid)
    points = plan(values, random_n, seed)
    board = ui_live.SweepBoard(len(points), metric)
    plan_doc = {"grid": values, "random": random_n, "seed": seed}
    where = where_of(executor, partition, account, qos, sbatch_option)
    with board:
        result = launch_sweep(loaded, points, where, default_home(),
                              lambda: recovered(open_store()), parallel=parallel,
                              allow_dirty=allow_dirty, strict=strict, detach=detach,
                              on_line=board.line, on_done=board.done, plan_doc=plan_doc)
    if detach and not where.here:
        if json_:
            ui.print_json({"sweep": result.id, "points": len(result.points),
                           "runs": [p.record.id for p in result.points if p.record]})
        else:
            typer.echo(f"sweep {result.id}: {len(result.points)} points queued")
        return
    ranked = rank(result.points, metric, minimize)
    if json_:
        ui.print_json({"sweep": result.id, "points": len(result.points),
                       "failed": len(result.failed), "metric": metric,
                       "best": ranked[0]["id"] if ranked and metric else None,
                       "runs": ranked})
    else:
        ui.render_sweep(result.id, ranked, metric, list(values))
    if result.interrupted:
        exit_with(ExitCode.INTERRUPTED)
    if result.failed:
        exit_with(ExitCode.JOB_FAILED)
