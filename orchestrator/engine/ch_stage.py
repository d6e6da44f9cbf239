"""The staging folder of a Charliecloud job: a mount point per volume, tmpfs points, the
skeletons that give each target under /repro and /run/secrets a mount point in a read-only
image, the environment file (ch-run reads it; values never on a command line) and the
script that mounts it all in the job's own namespaces and execs ch-run. Also the tools'
fixed environment: a job's LD_PRELOAD must never reach a root ``mount``."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineUnavailable, ReproError
from . import JobSpec, Volume

if TYPE_CHECKING:
    from ..gpu import GPU

JOB_USER = 65534



def private(name: str, mode: int) -> Path:
    """A folder of this user under /dev/shm (a tmpfs: the environment file may hold secret
    values) or the temporary folder; refused when someone else holds it."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    folder = base / f"{name}-{os.getuid()}"
    try:
        folder.mkdir(mode=mode)
    except FileExistsError:
        st = folder.lstat()
        if not folder.is_dir() or folder.is_symlink() or st.st_uid != os.getuid():
            raise ReproError(
                f"{folder} is not a folder of this user; remove it and run again"
            ) from None
    os.chmod(folder, mode)
    return folder


@dataclass
class Stage:
    """The job's staging folder: a mount point per volume, tmpfs points, the skeletons that
    give each target under /repro and /run/secrets a mount point, the environment file and
    the script that mounts it all and execs ch-run."""

    folder: Path
    script: str = ""

    @classmethod
    def make(
        cls, job_id: str, job: JobSpec, image_root: Path, info: dict[str, Any], gpus: list[GPU]
    ) -> Stage:
        folder = private("repro-ch-stage", 0o711) / job_id
        folder.mkdir(mode=0o711)
        stage = cls(folder)
        try:
            stage.script = stage._lay_out(job, image_root, info, gpus)
        except BaseException:
            stage.remove()
            raise
        return stage

    def _lay_out(
        self, job: JobSpec, image_root: Path, info: dict[str, Any], gpus: list[GPU]
    ) -> str:
        s = self.folder
        volumes, gpu_env = list(job.volumes), dict[str, str]()
        if gpus:  # the driver's files, bound where the job's LD_LIBRARY_PATH looks
            from .driver import driver_files

            files, gpu_env = driver_files()
            volumes += [Volume(f"gpu:{Path(t).name}", h, t) for t, h in files.items()
                        if h.exists()]
        root = os.geteuid() == 0
        mounts: list[str] = []  # the script's mount lines
        binds: list[str] = []  # ch-run's -b options, in order
        (s / "image").mkdir()
        mounts.append(_bind(image_root, s / "image", writable=False))
        size = job.tmp_bytes or (1 << 30)
        for name, target in (("tmp", "/tmp"), ("vartmp", "/var/tmp"), ("shm", "/dev/shm")):
            (s / name).mkdir()
            mounts.append(
                f"mount -t tmpfs -o size={size},mode=1777,nosuid,nodev tmpfs "
                f"{shlex.quote(str(s / name))}"
            )
            if name != "vartmp" or (image_root / "var" / "tmp").is_dir():
                binds.append(f"{s / name}:{target}")
        skeletons: dict[str, Path] = {}
        for top in ("/repro", "/run/secrets"):
            if any(v.target == top or v.target.startswith(top + "/") for v in volumes):
                skeletons[top] = s / ("skel" + top.replace("/", "-"))
                skeletons[top].mkdir()
                binds.append(f"{skeletons[top]}:{top}")
        targets = [v.target for v in volumes]
        for n, v in enumerate(volumes):
            if not v.source.exists():
                raise ReproError(f"the job's {v.name} volume {v.source} does not exist")
            point = s / f"v{n}"
            is_dir = v.source.is_dir()
            point.mkdir() if is_dir else point.touch()
            mounts.append(_bind(v.source, point, writable=v.writable))
            under = next((t for t in skeletons if v.target.startswith(t + "/")), None)
            nested = any(v.target.startswith(t + "/") for t in targets if t != v.target)
            if under is not None and not nested:  # its mount point in the skeleton
                p = skeletons[under] / v.target[len(under) + 1 :]
                p.parent.mkdir(parents=True, exist_ok=True)
                p.mkdir(exist_ok=True) if is_dir else p.touch()
            binds.append(f"{point}:{v.target}")
        env = _job_env(info, job, gpus, gpu_env)
        env_file = s / "env"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            for k, value in env.items():
                if "\n" in value or "\0" in value or "=" in k:
                    raise ReproError(
                        f"environment variable {k[:60]}: Charliecloud cannot "
                        "pass a name holding '=' or a value holding a newline"
                    )
                f.write(f"{k}='{value}'\n")  # ch-run strips one pair of single quotes
        if root:
            os.chown(env_file, JOB_USER, JOB_USER)
            for d in (s, *skeletons.values()):
                os.chmod(d, 0o755)
        ch_run = [
            tool("ch-run"),
            "--no-passwd",
            "--private-tmp",
            "--env-no-expand",
            "--unset-env=*",
            f"--set-env={env_file}",
            f"--uid={JOB_USER}",
            f"--gid={JOB_USER}",
            f"--cd={job.workdir}",
            *(f"--bind={b}" for b in binds),
            str(s / "image"),
            "--",
            *job.command,
        ]
        drop = (
            [tool("setpriv"), f"--reuid={JOB_USER}", f"--regid={JOB_USER}", "--clear-groups"]
            if root
            else []
        )
        lines = [
            "set -e",
            *mounts,
            f"{tool('hostname')} {shlex.quote(job.hostname)}",
            "exec " + shlex.join([*drop, *ch_run]),
        ]
        return "\n".join(lines) + "\n"

    def remove(self) -> None:
        self.remove_folder(self.folder)

    @staticmethod
    def remove_folder(folder: Path) -> None:
        """The staging folder: its mount points are empty here (the mounts were in the
        job's own namespace), its files are the skeletons and the environment file."""
        if folder.name.startswith("ch-") and folder.parent.name.startswith("repro-ch-stage"):
            shutil.rmtree(folder, ignore_errors=True)


def _bind(source: Path, point: Path, writable: bool) -> str:
    ro = "" if writable else " -o ro"
    return f"mount --bind{ro} {shlex.quote(str(source))} {shlex.quote(str(point))}"


def _job_env(info: dict[str, Any], job: JobSpec, gpus: list[GPU],
             gpu_env: dict[str, str] | None = None) -> dict[str, str]:
    """What Docker would give the job: the image's Env, then the job's, its hostname."""
    env: dict[str, str] = {}
    for item in info.get("env") or []:
        k, sep, v = str(item).partition("=")
        if sep:
            env[k] = v
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["HOSTNAME"] = job.hostname
    env.update(job.env)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(g.uuid for g in gpus)
        env["NVIDIA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
        from .driver import job_paths

        env.update({**(gpu_env or {}), **job_paths(env)})
    return env


def tool_env() -> dict[str, str]:
    """The environment of the tools repro starts (never the job's: a job's LD_PRELOAD must
    not reach a root `mount`): a fixed PATH, and the USER ch-run insists on."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "USER": os.environ.get("USER") or ("root" if os.geteuid() == 0 else "nobody"),
        "LANG": "C.UTF-8",
    }


def tool(name: str) -> str:
    found = shutil.which(name, path=tool_env()["PATH"])
    if found is None:
        pkg = "charliecloud-runtime" if name.startswith("ch-") else "util-linux"
        raise EngineUnavailable(
            f"{name} is not installed; install {pkg} (apt-get install "
            f"{pkg}), or use REPRO_ENGINE=docker"
        )
    return found
