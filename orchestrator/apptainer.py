"""A run as a folder for Apptainer, the runtime most HPC sites run (`repro export RUN
--apptainer DIR`): everything the job needs, each artifact hash-checked on its way out, and
``run.sh`` with the exact ``apptainer build`` and ``apptainer exec`` it takes.

Rendered, not run here: Apptainer is not packaged for Debian 12, the machine repro is tested
on, so the commands are untested (docs/clusters.md says so). They give the job the contract
it has under Docker and Charliecloud: ``--containall --cleanenv`` (its own PID and IPC
namespaces, an empty /tmp and home, none of the caller's environment), no network
(``--net --network none``), the hostname ``repro``, the image's and run's environment from a
file, the code writable and everything else under /repro read-only, the same machine id,
the run's memory and CPUs (Apptainer applies them with cgroups where the site allows).
Secrets come from the caller's environment when ``run.sh`` runs, onto a tmpfs, never into
the folder. The outputs stay in ``repro/code`` (the job's working folder); bringing them
back into a store is not done yet.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from .errors import ReproError, UsageError
from .hashing import shown
from .jobspec import machine_id
from .params import param_env
from .record import RunRecord
from .store import Store
from .workdir import CODE, PROJECT, target

SCRIPT = "run.sh"


def export(record: RunRecord, store: Store, dest: Path,
           on_line: Callable[[str], None] = lambda _: None) -> list[str]:
    """Write the run's Apptainer folder at ``dest`` (a new folder); what was written."""
    from .k8s import fetch_into

    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest} is not empty; give a new folder for the Apptainer export")
    dest.mkdir(parents=True, exist_ok=True)
    written = [f"repro/{w}" for w in fetch_into(record, store, dest / "repro")]
    _image_tar(record, store, dest / "image.tar", on_line)
    (dest / "machine-id").write_text(machine_id(record.resolved.seed) + "\n")
    (dest / "env").write_text("".join(f"{k}={shlex.quote(v)}\n"
                                      for k, v in sorted(job_env(record).items())))
    (dest / SCRIPT).write_text(script(record))
    os.chmod(dest / SCRIPT, 0o755)
    return [*written, "image.tar", "machine-id", "env", SCRIPT]


def job_env(record: RunRecord) -> dict[str, str]:
    """The run's environment as a JobSpec gives it (the image's own Env comes with the SIF)."""
    r = record.resolved
    return {**{k: str(v) for k, v in r.env.items()}, **param_env(r.params),
            "REPRO_RUN_ID": record.id, "HOSTNAME": "repro"}


def exec_args(record: RunRecord) -> list[str]:
    """The `apptainer exec` of the run, run from its exported folder."""
    return [a for group in _exec_groups(record) for a in group]


def _exec_groups(record: RunRecord) -> list[list[str]]:
    """Its arguments, each option with its value (one line each in run.sh). Paths are the
    folder's own ("$PWD/..."; Apptainer binds absolute paths)."""
    r = record.resolved
    res = r.resources
    work = "repro/code" if r.layout == PROJECT else "outputs"
    binds = ["repro:/repro:ro", f"{work}:/repro/outputs", "meta:/repro/meta",
             "machine-id:/etc/machine-id:ro"]
    if r.layout == PROJECT:
        binds.insert(1, f"repro/code:{CODE}")
    groups = [["apptainer", "exec"], ["--containall"], ["--cleanenv"], ["--no-home"],
              ["--no-init"], ["--hostname", "repro"], ["--env-file", "env"],
              ["--pwd", target(r.layout)], ["--memory", str(res.memory_bytes)],
              ["--cpus", f"{res.cpus:g}"]]
    if r.network == "none":
        groups.append(["--net", "--network", "none"])
    if res.gpus:
        groups.append(["--nv"])
    groups += [["--bind", f'"$PWD"/{b}'] for b in binds]
    if r.secrets:
        groups.append(["--bind", '"$SECRETS":/run/secrets:ro'])
    return [*groups, ["image.sif"], ["/bin/sh", "/repro/lib/boot.sh", *r.command]]


def script(record: RunRecord) -> str:
    r = record.resolved
    as_env = r.secrets if r.secret_env is None else r.secret_env
    lines = [
        "#!/bin/sh",
        f"# repro run {record.id} ({record.name}) under Apptainer: sh {SCRIPT} in this folder.",
        f"# Rendered by `repro export {record.id} --apptainer`. UNTESTED: Apptainer is not",
        "# packaged for the machine repro is tested on; see docs/clusters.md.",
        "set -eu",
        'cd "$(dirname "$0")"',
        f"# the image {shown(r.image.digest)}, from the store's archive, once",
        "[ -e image.sif ] || apptainer build image.sif docker-archive://image.tar",
        f"mkdir -p meta{'' if r.layout == PROJECT else ' outputs'}",
    ]
    if r.secrets:
        lines += ["# secrets: from this shell's environment onto a tmpfs, never into the folder",
                  'SECRETS="$(mktemp -d /dev/shm/repro-secrets-XXXXXX)"',
                  'trap \'rm -rf "$SECRETS"\' EXIT']
        for name in r.secrets:
            lines.append(f': "${{{name}:?set {name}: a secret the run reads}}"')
            lines.append(f"printf '%s' \"${name}\" > \"$SECRETS/{name}\"")
            if name in as_env:
                lines.append(f'export APPTAINERENV_{name}="${name}"')
    rendered = " \\\n  ".join(" ".join(_quoted(a) for a in group)
                                for group in _exec_groups(record))
    lines.append(("" if r.secrets else "exec ") + rendered)
    return "\n".join(lines) + "\n"


def _quoted(arg: str) -> str:
    """An argument for sh: quoted, but a leading "$PWD" or "$SECRETS" left to expand."""
    for var in ('"$PWD"', '"$SECRETS"'):
        if arg.startswith(var):
            return var + shlex.quote(arg[len(var):])
    return shlex.quote(arg)


def _image_tar(record: RunRecord, store: Store, path: Path,
               on_line: Callable[[str], None]) -> None:
    """The run's image as a `docker save` archive (what `apptainer build docker-archive://`
    reads), joined from the store's parts, each checked against its hash."""
    from .engine.image_archive import (
        archive_of,
        join_from_store,
        member_digests,
        read_index,
    )

    image = record.resolved.image
    archive = archive_of(image, store)
    index = read_index(archive, store) if archive else None
    if archive is None or index is None:
        raise ReproError(f"image {shown(image.digest)} of run {record.id} is not archived in "
                         "the store; launch or replay it once where Docker runs (it archives "
                         "the image), then export again")
    for what, sha in [("archive", archive), *member_digests(archive, store)]:
        if store.artifacts.check(sha) != "ok":
            raise ReproError(f"image {shown(image.digest)}: {what} ({sha[:16]}...) is corrupt "
                             "in the store; run `repro fsck`")
    on_line(f"writing image {shown(image.digest)} as {path.name}")
    with open(path, "wb") as f:
        for chunk in join_from_store(index, store, image.digest):
            f.write(chunk)


def summary(record: RunRecord, dest: Path, written: list[str]) -> dict[str, object]:
    return {"run": record.id, "folder": str(dest), "written": written,
            "run_script": str(dest / SCRIPT), "exec": exec_args(record),
            "tested": False}

