"""Commands that keep a store and a machine in order: `fsck`, `gc`, `cancel`, `wait`,
`doctor`, `ui`, and the hidden ones a scheduler's node runs (`node-run`, `fetch`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    pass

from .base import (
    JsonOpt,
    app,
    detachable,
    existing_store,
    exit_for,
    exit_with,
    run_hooks,
    store_of,
)


@app.command()
def fsck(json_: JsonOpt = False) -> None:
    """Check that every artifact a run refers to exists and still matches its sha256
    (exit 10 when one does not)."""
    from .. import ui
    from ..errors import ExitCode
    from ..fsck import fsck as check

    store = existing_store()
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


@app.command("node-run", hidden=True)
def node_run(run: Annotated[str, typer.Argument(help="The queued run's id.")]) -> None:
    """What a Slurm job runs on its node: the queued run, from the shared stores, by this
    node's engine."""
    from .. import ui
    from ..engine import connect
    from ..slurm import run_on_node
    from ..store import open_store

    store = open_store()
    record = run_on_node(run, store, connect(), run_hooks(False))
    ui.progress(f"run {record.id} {record.status}" + (f": {record.reason}" if record.reason
                                                       else ""))
    exit_for(record)


@app.command("fetch", hidden=True)
def fetch(
    run: Annotated[str, typer.Argument(help="Run id.")],
    into: Annotated[Path, typer.Option("--into", help="Folder to fill.")],
) -> None:
    """What a Kubernetes Job's init container runs: the run's code, inputs, lock and repro's
    runtime into a folder, each artifact hash-checked."""
    from .. import k8s, ui
    from ..store import open_store

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
    from .. import scheduler, ui, ui_run, views

    store = store_of(run)
    record = store.runs.get(run)
    if not record.status.terminal:
        with detachable():
            record = scheduler.follow(store, record, run_hooks(quiet))
    if json_:
        ui.print_json(views.record_json(record, store.runs.steps(record.id)))
    else:
        ui_run.render_record(record, store.runs.steps(record.id))
    exit_for(record)


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
    from .. import scheduler, ui
    from ..errors import UsageError
    from ..store import open_store
    from ..store.query import sweep_is

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
def gc(json_: JsonOpt = False) -> None:
    """Recover runs whose repro process died (stop their containers, record them lost) and
    remove temp files of interrupted writes."""
    from .. import ui
    from ..engine import connect
    from ..recovery import collect_garbage

    store = existing_store()
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
    from .. import settings
    from ..store import default_home, open_store
    from ..web import check_bind, make_server, read_token

    token = read_token(token_file, settings.ui_token())
    check_bind(host, allow_remote, token)
    home = default_home()
    open_store(home).close()  # create/migrate before serving
    try:
        server = make_server(home, host, port, token, set(allow_host or ()))
    except OSError as e:
        from ..errors import UsageError

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
    from .. import ui
    from ..doctor import check
    from ..engine import connect
    from ..errors import ExitCode

    checks = check(connect(), images)
    if json_:
        ui.print_json({"ok": all(c["ok"] for c in checks), "checks": checks})
    else:
        ui.render_doctor(checks)
    if not all(c["ok"] for c in checks):
        exit_with(ExitCode.ENVIRONMENT)
