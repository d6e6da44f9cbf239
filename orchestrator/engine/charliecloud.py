"""Charliecloud as an executor: a ``JobSpec`` run by ``ch-run``, with no daemon and no root.

Where Docker cannot run (a cluster node, a GPU machine set up with only a driver), the job
runs as a child of repro, so a scheduler's job holds it (``scancel`` kills it, its limits
count it). The image comes from the store's archive, unpacked once per id (``unpacked.py``).

One job is one process tree, started as ``unshare`` (new mount, PID, UTS and, unless the
network is granted, network namespaces) running a short ``sh`` script that mounts the job's
volumes on a private staging folder (read-only where the job may not write, enforced by the
kernel, not by file modes), tmpfs for /tmp, /var/tmp and /dev/shm, sets the hostname, and
execs ``ch-run`` on the read-only image with ``--no-passwd`` (the image's own users) and the
job's environment from a file (never on a command line). As root, the mounts are made as
root and ``ch-run`` starts as ``nobody`` (setpriv); as an ordinary user, the namespaces are
that user's (``unshare --user --map-root-user``). Either way the job runs as 65534:65534.

Limits: whole cores by affinity; memory, CPU quota and processes by a cgroup where repro may
make one (root: cgroup v2, else v1; an ordinary user: a delegated v2 cgroup of its own), else
a per-process data rlimit; inside a Slurm job's cgroup, none is made (Slurm's limits hold and
the job stays where Slurm counts it). ``host()`` reports which applied (``limits``); a strict
job (``JobSpec.strict``) is refused when its memory limit cannot be enforced.

A job's state (its pid and labels) is a file in a private folder of this user, so a later
repro finds it (``find``) after a crash, as Docker's labels allow.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineUnavailable, ImageError, ReproError
from . import Interrupted, JobRef, JobSpec, Outcome, WaitTimeout, locked
from .ch_stage import Stage, private, tool, tool_env
from .limits import Limits
from .unpacked import Unpacked

if TYPE_CHECKING:
    from ..gpu import GPU

REFUSED = (
    "{what}: Charliecloud has no engine to {verb}; do it where Docker or podman runs "
    "(into a store this machine shares), then run here from the store's archive"
)


class CharliecloudEngine:
    """Executor (``ch-run``) and image backend (unpacked folders) in one, like DockerEngine."""

    name = "charliecloud"

    def __init__(self, cache: Path | None = None) -> None:
        self.images = Unpacked(cache)

    # --- images: only what comes from the store's archive ---------------------------------

    def image(self, ref: str) -> dict[str, Any] | None:
        return self.images.image(ref)

    def load(self, archive: Iterable[bytes]) -> list[str]:
        return self.images.load(archive)

    def tag(self, image_id: str, repo: str, tag: str) -> None:
        self.images.tag(image_id, repo, tag)

    def remove_image(self, ref: str) -> None:
        self.images.remove_image(ref)

    def pull(self, ref: str) -> str:
        raise ImageError(REFUSED.format(what=f"pull {ref}", verb="pull images"))

    def push(self, image_id: str, repository: str, tag: str, on_line: Callable[[str], None]) -> str:
        raise ImageError(REFUSED.format(what=f"push {repository}", verb="push images"))

    def save(self, image_id: str) -> Iterator[bytes]:
        raise ImageError(REFUSED.format(what=f"archive {image_id[:19]}", verb="save images from"))

    def build(
        self,
        context: Path,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        on_line: Callable[[str], None],
        dockerfile: Path | None = None,
    ) -> str:
        raise ImageError(REFUSED.format(what=f"build {tag}", verb="build images"))

    def commit(self, job_id: str, changes: list[str]) -> str:
        raise ImageError(REFUSED.format(what="commit", verb="build images"))

    def import_rootfs(self, tar_path: Path, repository: str, tag: str, changes: list[str]) -> str:
        raise ImageError(REFUSED.format(what=f"build {repository}", verb="build images"))

    # --- the executor ---------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return {
            "version": _ch_run_version(tool("ch-run")),
            "api": None,
            "os": "linux",
            "arch": platform.machine(),
            "kernel": platform.release(),
            "engine": "charliecloud",
        }

    def host(self, gpus: dict[str, Any] | None) -> tuple[dict[str, Any], list[GPU]]:
        from .. import capture, gpu

        inventory, why_none = gpu.inventory() if gpus else ([], None)
        assigned = gpu.select(gpus, inventory, why_none)
        if gpus is None:
            inventory = gpu.inventory()[0]
        facts = capture.host_facts(self.version(), inventory, assigned)
        facts["runtime"] = f"charliecloud {facts['docker']}"
        return facts, assigned

    def run(
        self, job: JobSpec, started: Callable[[str], None], on_log: Callable[[bytes], None]
    ) -> Outcome:
        host, assigned = self.host(job.gpus)
        info = self.image(job.image)
        if info is None:
            raise ImageError(
                f"image {job.image[:19]} is not unpacked here; it comes from the "
                "store's archive (repro replays and launches load it first)"
            )
        limits = Limits.plan(job)
        if job.strict and limits.unenforced:
            raise ReproError(
                f"--strict: this machine cannot enforce "
                f"{', '.join(limits.unenforced)} under Charliecloud (no cgroup "
                "repro may create); run without --strict, or where Docker runs"
            )
        job_id = f"ch-{job.run_id[:16]}-{secrets.token_hex(4)}"
        with _cores_lock():
            from .docker import free_cores

            cpuset = free_cores(job.cpus, lambda: [j.cores for j in _states()])
            stage = Stage.make(job_id, job, self.images.root(job.image), info, assigned)
            try:
                limits.create(job_id)
                proc = _spawn(stage, limits, cpuset, job.network)
            except BaseException:
                limits.remove()
                stage.remove()
                raise
            state = JobState(
                job_id,
                proc.pid,
                _start_time(proc.pid),
                job.labels,
                limits.cgroups,
                str(stage.folder),
                cpuset or "",
            )
            state.save()
        host["cpuset"] = cpuset
        host["limits"] = limits.said(cpuset, job.network)
        outcome = Outcome(job_id=job_id, host=host, gpus=assigned)
        tail = bytearray()
        try:
            started(job_id)
        except BaseException:
            self.cleanup(job_id)
            raise
        assert proc.stdout is not None
        follower = _follow(proc.stdout, on_log, tail)
        try:
            try:
                code = proc.wait(timeout=job.timeout_s)
                outcome.code = code if code >= 0 else 128 - code
                outcome.oom_killed = limits.oom_killed()
                outcome.oom_limit = limits.held_limit()
            except subprocess.TimeoutExpired:
                raise WaitTimeout from None
        except WaitTimeout:
            _stop(proc.pid, min(job.stop_grace_s, 5))
            outcome.timed_out = True
        except (Interrupted, KeyboardInterrupt):
            outcome.interrupted = True
            _stop(proc.pid, job.stop_grace_s)
        finally:
            follower.join(timeout=10)
            outcome.stderr_tail = b"\n".join(bytes(tail).splitlines()[-40:]).decode(
                "utf-8", "replace"
            )
        return outcome

    def find(self, labels: dict[str, str]) -> list[JobRef]:
        return [
            JobRef(id=s.job_id, labels=s.labels, running=s.alive())
            for s in _states()
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def cancel(self, job_id: str, grace_s: float) -> None:
        state = JobState.load(job_id)
        if state is not None and state.alive():
            _stop(state.pid, grace_s)

    def cleanup(self, job_id: str) -> None:
        state = JobState.load(job_id)
        if state is None:
            return
        if state.alive():
            _stop(state.pid, 0)
        Limits.remove_all(state.cgroups)
        Stage.remove_folder(Path(state.stage))
        state.path(job_id).unlink(missing_ok=True)


@functools.lru_cache(maxsize=4)
def _ch_run_version(ch_run: str) -> str:
    """`ch-run --version` of that binary, asked once per process (each launch and replay
    records it)."""
    try:
        out = subprocess.run(
            [ch_run, "--version"], capture_output=True, text=True, timeout=10, env=tool_env()
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineUnavailable(f"ch-run --version failed ({e})") from None
    return ((out.stdout or out.stderr).strip().splitlines()[-1:] or ["?"])[0]


# --- the process ------------------------------------------------------------------------


def _spawn(
    stage: Stage, limits: Limits, cpuset: str | None, network: str
) -> subprocess.Popen[bytes]:
    """The job's process tree: (affinity) -> sh joining the cgroups -> unshare -> sh
    mounting the stage -> ch-run -> the job. Its own session, so a stop reaches all of it."""
    root = os.geteuid() == 0
    flags = [
        "--mount",
        "--pid",
        "--uts",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--propagation",
        "private",
    ]
    if network == "none":
        flags.append("--net")
    if not root:
        flags = ["--user", "--map-root-user", *flags]
    inner = [tool("unshare"), *flags, "/bin/sh", "-c", stage.script]
    joins = "".join(f"echo $$ > {shlex.quote(cg)}/cgroup.procs\n" for cg in limits.cgroups)
    rlimit = ""
    if limits.kind == "rlimit":
        rlimit = f"ulimit -d {max(limits.memory_bytes >> 10, 1)}\n"
    outer = ["/bin/sh", "-c", f"set -e\n{joins}{rlimit}exec " + shlex.join(inner)]
    if cpuset:
        outer = [tool("taskset"), "-c", cpuset, *outer]
    try:
        return subprocess.Popen(
            outer,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=tool_env(),
            close_fds=True,
        )
    except OSError as e:
        raise EngineUnavailable(f"starting ch-run: {e}") from None


def _follow(pipe: Any, on_log: Callable[[bytes], None], tail: bytearray) -> threading.Thread:
    """A thread handing the job's output (stdout and stderr as written, in one pipe) to
    ``on_log``, keeping its last 16 KiB in ``tail``."""

    def follow() -> None:
        fd = pipe.fileno()
        while chunk := os.read(fd, 1 << 16):
            on_log(chunk)
            tail.extend(chunk)
            del tail[:-16384]
        pipe.close()

    t = threading.Thread(target=follow, name="ch-logs", daemon=True)
    t.start()
    return t


def _stop(pid: int, grace_s: float) -> None:
    """SIGTERM to the job's whole session (its process 1 ignores it unless it handles it,
    as under `docker stop`), SIGKILL after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:  # not ours (a later repro): watch it go
                if not _alive(pid):
                    return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot): a pid reused later differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


# --- what a later repro finds --------------------------------------------------------------


@dataclass
class JobState:
    job_id: str
    pid: int
    start: str
    labels: dict[str, str]
    cgroups: list[str]
    stage: str
    cores: str = ""

    @staticmethod
    def path(job_id: str) -> Path:
        return private("repro-ch-jobs", 0o700) / f"{job_id}.json"

    def save(self) -> None:
        tmp = self.path(self.job_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        os.replace(tmp, self.path(self.job_id))

    @classmethod
    def load(cls, job_id: str) -> JobState | None:
        if "/" in job_id or not job_id.startswith("ch-"):
            return None
        try:
            return cls(**json.loads(cls.path(job_id).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        return _alive(self.pid) and _start_time(self.pid) == self.start


def _states() -> list[JobState]:
    found = []
    for p in sorted(private("repro-ch-jobs", 0o700).glob("ch-*.json")):
        state = JobState.load(p.stem)
        if state is not None:
            found.append(state)
    return found


def _cores_lock() -> AbstractContextManager[None]:
    """Held while cores are chosen and the job started (all repro processes of this user)."""
    return locked(private("repro-ch-jobs", 0o700) / ".lock")
