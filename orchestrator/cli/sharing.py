"""Commands that carry runs between people: `export`, `import`, `push`, `pull`, `cite`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from .base import (
    JsonOpt,
    app,
    opened,
    recovered,
    store_of,
)


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) to export.")],
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="Write a self-contained bundle (manifest + artifacts) to this new "
        "folder.")] = None,
    apptainer: Annotated[Path | None, typer.Option(
        "--apptainer", help="Write the run as a folder for Apptainer to this new folder: "
        "what the job needs and run.sh with the exact apptainer build and exec (untested "
        "here: docs/clusters.md).")] = None,
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
    from .. import ui
    from ..bundle import export_bundle, manifest_of, needed_artifacts
    from ..engine import connect
    from ..errors import UsageError
    from ..units import parse_size

    store = store_of(run)
    record = store.runs.get(run)
    if apptainer is not None:
        from .. import apptainer as rendered

        if bundle is not None:
            raise UsageError("give --bundle or --apptainer, not both")
        written = rendered.export(record, store, apptainer, ui.progress)
        doc = rendered.summary(record, apptainer, written)
        if json_:
            ui.print_json(doc)
        else:
            ui.progress(f"exported run {record.id} for Apptainer to {apptainer}: sh "
                        f"{apptainer / rendered.SCRIPT} runs it (untested here)")
        return
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
    from .. import ui
    from ..bundle import import_bundle
    from ..errors import UsageError
    from ..store import open_store

    if not bundle.exists():
        raise UsageError(f"{bundle}: no such bundle folder or manifest")
    store = recovered(open_store())
    record = import_bundle(bundle, store, ui.progress)
    origin = store.runs.origin(record.id)
    absent = len(origin["absent"]) if origin else 0
    if json_:
        ui.print_json({"id": record.id, "name": record.name, "status": str(record.status),
                       "origin": origin})
    else:
        typer.echo(f"imported run {record.id} ({record.name}, {record.status})"
                   + (f"; {absent} artifact(s) did not come with it" if absent else ""))


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
    from .. import ui
    from ..cite import card
    from ..cite import markdown as as_markdown

    done = card(store_of(run), run, metric)
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
    sync_refs("push", runs_ or [], where, to, to_artifacts, json_)


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
    sync_refs("pull", runs_ or [], where, from_, from_artifacts, json_)


def sync_refs(verb: str, refs: list[str], where: str | None, team_url: str | None,
          team_artifacts: str | None, json_: bool) -> None:
    from .. import sync, ui, ui_live
    from ..engine import connect
    from ..errors import UsageError
    from ..store import open_store, open_team
    from ..store.db import safe_url
    from ..store.query import parse_where
    from ..units import human_size

    if not refs and where is None:
        raise UsageError(f"name the runs to {verb} (RUN... or --where EXPR)")
    flag = "--to" if verb == "push" else "--from"
    team_url = team_url or os.environ.get("REPRO_TEAM_STORE", "").strip()
    team_artifacts = team_artifacts or os.environ.get("REPRO_TEAM_ARTIFACTS", "").strip()
    if not team_url or not team_artifacts:
        raise UsageError(f"repro {verb} needs the team's store: set REPRO_TEAM_STORE and "
                         f"REPRO_TEAM_ARTIFACTS (or pass {flag} URL and {flag}-artifacts URL)")
    compiled = parse_where(where) if where is not None else None
    local = recovered(open_store())
    team = open_team(local, team_url, team_artifacts)
    opened.append(team)
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
