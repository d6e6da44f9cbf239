"""The job a run becomes: the backend-neutral ``JobSpec`` (volumes, environment, limits,
labels), the secret values as files on a tmpfs mounted into it, and the fixed machine id and
run description it sees. The runner and recovery use it; executors only read the JobSpec."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from . import settings, workdir
from .engine import LABEL_RUN, LABEL_STORE, LABEL_SWEEP, JobSpec, Volume
from .errors import ReproError
from .params import param_env
from .record import RunRecord
from .resolve import Resolution
from .runtime import RUNTIME_DIR, VENDOR_PACKAGING

CONTAINER_USER = "65534:65534"  # nobody:nogroup; never root


SECRETS_ROOT = Path("/dev/shm")  # a tmpfs: secret values never touch a disk


def _secrets_dir(run_id: str) -> Path:
    root = SECRETS_ROOT if SECRETS_ROOT.is_dir() else Path(tempfile.gettempdir())
    return root / f"repro-secrets-{os.getuid()}" / run_id


def write_secrets(run_id: str, values: dict[str, str]) -> dict[str, Path]:
    """Each secret as a file in a private folder on a tmpfs (mounted into the container at
    /run/secrets/NAME, so `docker inspect` shows a path, never the value)."""
    if not values:
        return {}
    folder = _secrets_dir(run_id)
    try:
        folder.parent.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked next: it must be ours
    st = folder.parent.lstat()  # someone else's folder (or a link) there would see them
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ReproError(f"{folder.parent} is not a folder of this user; remove it and "
                         "launch again (secret values go there)")
    os.chmod(folder.parent, 0o700)  # only this user reaches the files; the engine mounts them
    folder.mkdir(mode=0o700, exist_ok=True)
    files = {}
    for name, value in values.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        os.chmod(path, 0o444)  # the job runs as another user (nobody)
        files[name] = path
    return files


def remove_secrets(run_id: str) -> None:
    shutil.rmtree(_secrets_dir(run_id), ignore_errors=True)


MACHINE_ID = "machine-id"  # in the run's folder, the job's /etc/machine-id


def machine_id(seed: int) -> str:
    """The job's /etc/machine-id: the same for every run of a seed (a replay's too), so a
    job that names or seeds things by the machine agrees with its replays."""
    return hashlib.sha256(f"repro machine-id {seed}".encode()).hexdigest()[:32]


def job_spec(record: RunRecord, res: Resolution, work: Path, secret_files: dict[str, Path],
             store_home: Path) -> JobSpec:
    """The backend-neutral job for a run: its volumes, environment, limits and labels."""
    r = res.resolved
    here = workdir.folder(work, r.layout)
    if r.layout == workdir.PROJECT:  # one writable folder, by both names
        volumes = [Volume("code", here, workdir.CODE, writable=True),
                   Volume("outputs", here, "/repro/outputs", writable=True)]
    else:
        volumes = [Volume("code", res.snapshot.extracted, workdir.CODE),
                   Volume("outputs", here, "/repro/outputs", writable=True)]
    volumes += [Volume("lib", RUNTIME_DIR, "/repro/lib"),
                Volume("run", work / "run.json", "/repro/run.json"),
                Volume("meta", work / "meta", "/repro/meta", writable=True)]
    if (work / MACHINE_ID).exists():  # absent for a run prepared before it was fixed
        volumes.append(Volume("machine-id", work / MACHINE_ID, "/etc/machine-id"))
    volumes += [Volume(f"input:{name}", src, f"/repro/inputs/{name}")
                for name, src in res.input_sources.items()]
    volumes += [Volume(f"mount:{name}", src, f"{workdir.CODE}/{r.inputs[name].mount}")
                for name, src in res.input_sources.items() if r.inputs[name].mount]
    if res.lock_path is not None:
        volumes.append(Volume("lock", res.lock_path, "/repro/lock.txt"))
        volumes.append(Volume("vendor", VENDOR_PACKAGING, "/repro/vendor/packaging"))
    volumes += [Volume(f"secret:{name}", path, f"/run/secrets/{name}")
                for name, path in secret_files.items()]
    as_env = r.secrets if r.secret_env is None else r.secret_env  # None: an older record
    env = {**r.env, **param_env(r.params), "REPRO_RUN_ID": record.id,
           **{n: v for n, v in res.secret_env.items() if n in as_env}}
    labels = {LABEL_RUN: record.id, LABEL_STORE: str(store_home)}
    if record.sweep_id:
        labels[LABEL_SWEEP] = record.sweep_id
    return JobSpec(
        run_id=record.id, image=r.image.digest,
        command=["/bin/sh", "/repro/lib/boot.sh", *r.command], env=env, volumes=volumes,
        user=CONTAINER_USER, workdir=workdir.target(r.layout), cpus=r.resources.cpus,
        memory_bytes=r.resources.memory_bytes, gpus=r.resources.gpus, network=r.network,
        timeout_s=r.timeout_s, labels=labels, stop_grace_s=settings.stop_grace(),
        # a tmpfs is charged to the container's memory, so /tmp can never fill the disk
        tmp_bytes=settings.tmp_size(r.resources.memory_bytes), strict=res.strict)


def run_info(record: RunRecord, res: Resolution) -> dict:
    """/repro/run.json: what the job may read about its own run."""
    r = res.resolved
    return {"id": record.id, "name": record.name, "params": r.params, "seed": r.seed,
            "inputs": {n: f"/repro/inputs/{n}" for n in r.inputs}, "outputs": "/repro/outputs",
            "workdir": workdir.target(r.layout), "command": r.command}
