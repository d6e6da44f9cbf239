"""The pieces every command shares: the typer app, the options, opening the store (and
recovering its orphans), hooks for a run's live output, and exit codes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..record import RunRecord
    from ..runner import Hooks
    from ..scheduler import Where
    from ..store import Store


app = typer.Typer(
    name="repro", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    help="Reproducible ML training runs: launch in a container, record everything, replay.",
)


image_app = typer.Typer(no_args_is_help=True, help="Build images from images/ recipes.")
app.add_typer(image_app, name="image")


state = {"debug": False}


opened: list[Store] = []  # stores this command opened: what their listings skipped is said


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


AllowDirtyOpt = Annotated[bool, typer.Option(
    "--allow-dirty", help="Run uncommitted code; the diff is recorded.")]


StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse image tags that are not pinned by digest.")]


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

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
    state["debug"] = debug
    if store is not None:
        os.environ["REPRO_STORE"] = store  # every store this process opens, workers too


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


def existing_store() -> Store | None:
    """The store, without creating one as a side effect of a read-only command."""
    from ..store import default_home, open_store

    home = default_home()
    if (home / "repro.db").exists() or os.environ.get("REPRO_STORE"):
        return recovered(open_store(home))
    return None


def store_of(run: str) -> Store:
    """The store that should hold ``run`` (an error naming the folder when there is none)."""
    from ..errors import RunNotFound
    from ..store import default_home

    store = existing_store()
    if store is None:
        raise RunNotFound(f"no run {run!r} in {default_home()}: there is no store there yet; "
                          "cd to the folder you launched from or set REPRO_HOME")
    return store


def recovered(store: Store) -> Store:
    """Finish runs whose repro process died (found by every command that opens the store;
    costs one indexed query when there are none)."""
    from .. import ui
    from ..errors import EngineUnavailable
    from ..recovery import orphans, recover

    opened.append(store)
    lost = orphans(store)
    if lost:
        from ..engine import connect

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


def where_of(executor: str | None, partition: str | None, account: str | None,
           qos: str | None, extra: list[str] | None) -> Where:
    from ..scheduler import where

    return where(executor, partition=partition, account=account, qos=qos, extra=extra)


@contextlib.contextmanager
def detachable() -> Iterator[None]:
    """Ctrl-C while following a submitted run: it goes on; say how to reach it, exit 130."""
    from .. import ui
    from ..scheduler import Detached

    try:
        yield
    except Detached as e:
        ui.progress(str(e))
        raise typer.Exit(int(e.exit_code)) from None


def run_hooks(quiet: bool, foreign: bool = False, table: bool = False) -> Hooks:
    """``foreign``: the job is a run from elsewhere: its output reaches a terminal inert.
    ``table``: the result will be drawn as a table, whose modules load while the job runs."""
    from .. import ui, ui_live
    from ..runner import Hooks

    on_start = ui.preload_tables if table else (lambda _job_id: None)
    if quiet:  # warnings only: no trace, no job output, no live line
        return Hooks(on_line=lambda line: ui.progress(line) if line.startswith("warning:")
                     else None, on_start=on_start)
    live = ui_live.LiveStatus(inert=foreign)
    return Hooks(on_line=ui.progress, on_log=live.log, on_metrics=live.metrics,
                 on_end=live.end, on_start=on_start)


def path_exists(path: str) -> bool:
    """Is there a file or folder at ``path`` (a name too long to be one is not)?"""
    try:
        return Path(path).exists()
    except OSError:
        return False


def is_foreign(record: RunRecord, store: Store) -> bool:
    from ..replay import foreign

    return foreign(record, store)


def render_replay(rec: RunRecord, store: Store, json_: bool) -> None:
    from .. import ui, ui_run, views

    series = store.runs.steps(rec.id)
    if json_:
        ui.print_json(views.record_json(rec, series))
    else:
        ui_run.render_verdict(rec)


def verdict_exit(rec: RunRecord) -> int:
    from ..errors import VERDICT_EXIT

    return VERDICT_EXIT[(rec.verdict.result if rec.verdict else "differs")]


def exit_with(code: int) -> None:
    if code:
        raise typer.Exit(int(code))


def exit_for(record: RunRecord) -> None:
    exit_with(record.status.exit_code)
