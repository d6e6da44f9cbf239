"""The limits of a job run outside a container engine (Charliecloud): which mechanism holds
its memory, CPU quota and processes here, the cgroups made for it, and whether it was
killed for memory. Inside a Slurm job whose cgroup limits its memory none is made (Slurm's
limit holds, and a cgroup made elsewhere would take the job out of Slurm's count); else a
cgroup where repro may make one (root: cgroup v2, else v1); otherwise a per-process data
rlimit, and the record says so."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReproError
from . import JobSpec

CGROUP = Path("/sys/fs/cgroup")


@dataclass
class Limits:
    """Which mechanism holds the job's memory, CPU quota and processes, and its cgroups."""

    memory_bytes: int
    cpus: float
    kind: str  # "cgroup v2", "cgroup v1", "slurm", "rlimit"
    cgroups: list[str] = field(default_factory=list)
    unenforced: list[str] = field(default_factory=list)
    # a scheduler's cgroup the job runs in (read, never made or removed by repro), its
    # memory limit and its count of oom kills before the job started
    held_by: Path | None = None
    held_bytes: int = 0
    ooms_before: int = 0

    @classmethod
    def plan(cls, job: JobSpec) -> Limits:
        kind, held_by, held_bytes = _cgroup_kind()
        unenforced = []
        if kind == "rlimit":
            unenforced = [
                "the job's total memory (a per-process data limit only)",
                "its CPU quota (whole cores by affinity only)",
            ]
        elif kind == "slurm" and held_by is None:
            unenforced = ["the job's total memory (REPRO_CH_LIMITS=slurm, but this process "
                          "is in no Slurm cgroup that limits memory)"]
        limits = cls(job.memory_bytes, job.cpus, kind, unenforced=unenforced,
                     held_by=held_by, held_bytes=held_bytes)
        limits.ooms_before = _oom_kills(held_by) if held_by else 0
        return limits

    def create(self, job_id: str) -> None:
        if self.kind == "cgroup v2":
            base = CGROUP / "repro"
            base.mkdir(exist_ok=True)
            for where in (CGROUP, base):
                _write(where / "cgroup.subtree_control", "+memory +cpu +pids", quiet=True)
            cg = base / job_id
            cg.mkdir()
            self.cgroups = [str(cg)]
            _write(cg / "memory.max", str(self.memory_bytes))
            _write(cg / "memory.swap.max", "0", quiet=True)
            _write(cg / "cpu.max", f"{int(self.cpus * 100000)} 100000")
            _write(cg / "pids.max", "4096", quiet=True)
        elif self.kind == "cgroup v1":
            for controller in ("memory", "cpu", "pids"):
                if not (CGROUP / controller).is_dir():
                    continue
                cg = CGROUP / controller / "repro" / job_id
                cg.mkdir(parents=True)
                self.cgroups.append(str(cg))
            for cg_ in map(Path, self.cgroups):
                name = cg_.parent.parent.name
                if name == "memory":
                    _write(cg_ / "memory.limit_in_bytes", str(self.memory_bytes))
                    _write(cg_ / "memory.memsw.limit_in_bytes", str(self.memory_bytes), quiet=True)
                elif name == "cpu":
                    _write(cg_ / "cpu.cfs_period_us", "100000")
                    _write(cg_ / "cpu.cfs_quota_us", str(int(self.cpus * 100000)))
                elif name == "pids":
                    _write(cg_ / "pids.max", "4096")

    def said(self, cpuset: str | None, network: str) -> dict[str, str]:
        """For the record: what held each limit."""
        memory = {
            "cgroup v2": "cgroup v2 memory.max",
            "cgroup v1": "cgroup v1 memory",
            "slurm": self.held_limit() or "the Slurm job's cgroup, which set no memory limit",
            "rlimit": "per-process data rlimit (not the job's total)",
        }[self.kind]
        cpu = {
            "cgroup v2": "cgroup v2 cpu.max",
            "cgroup v1": "cgroup v1 cfs quota",
            "slurm": "the Slurm job's cgroup",
            "rlimit": "not enforced",
        }[self.kind]
        return {
            "runtime": "charliecloud",
            "memory": memory,
            "cpu_quota": cpu,
            "cores": f"affinity {cpuset}" if cpuset else "all",
            "network": "a network namespace of its own, no interfaces"
            if network == "none"
            else "the host's network",
        }

    def held_limit(self) -> str | None:
        """The memory limit that held the job where it is not the job's own (a scheduler's
        cgroup, which also counts repro), for the reason an oom kill is given."""
        if self.held_by is None:
            return None
        return f"the Slurm job's cgroup ({self.held_bytes >> 20} MiB for the job and repro)"

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process for memory in the job's cgroups (in a
        scheduler's cgroup: since the job started; repro itself is the only other process
        there, and a killed repro records nothing)."""
        if self.held_by is not None:
            return _oom_kills(self.held_by) > self.ooms_before
        return any(_oom_kills(Path(cg)) > 0 for cg in self.cgroups)

    def remove(self) -> None:
        self.remove_all(self.cgroups)

    @staticmethod
    def remove_all(cgroups: list[str]) -> None:
        for cg in cgroups:
            path = Path(cg)
            if CGROUP in path.parents and "repro" in path.parts:
                for _ in range(50):  # the processes leave it as they are reaped
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)


def here() -> str:
    """What would hold a Charliecloud job's limits on this machine now (`repro doctor`)."""
    kind, held_by, held_bytes = _cgroup_kind()
    if kind == "slurm":
        return (f"the Slurm job's cgroup holds a job's memory ({held_bytes >> 20} MiB)"
                if held_by else "REPRO_CH_LIMITS=slurm, but no Slurm cgroup here limits "
                "memory: a job's memory would not be held (launch --strict refuses)")
    if kind == "rlimit":
        return ("a per-process data rlimit only: a job's total memory and CPU quota are not "
                "held (launch --strict refuses; root, or a cgroup-limited Slurm job, "
                "holds them)")
    return f"memory, CPU quota and processes by a {kind} of repro's, made per job"


def _cgroup_kind() -> tuple[str, Path | None, int]:
    """How limits are held here, and the scheduler's memory cgroup and its limit where that
    holds them: inside a Slurm job whose cgroup limits memory, Slurm's (a cgroup made
    elsewhere would take the job out of it); as root, a cgroup of repro's; else a rlimit."""
    from .. import settings

    forced = settings.ch_limits()
    held = _memory_cgroup() if os.environ.get("SLURM_JOB_ID") else None
    held_by, held_bytes = held if held and "slurm" in str(held[0]) else (None, 0)
    if forced is not None:
        return forced, held_by if forced == "slurm" else None, held_bytes
    if held_by is not None:
        return "slurm", held_by, held_bytes
    if os.geteuid() == 0:
        if (CGROUP / "cgroup.controllers").exists():
            return "cgroup v2", None, 0
        if (CGROUP / "memory" / "memory.limit_in_bytes").exists():
            return "cgroup v1", None, 0
    return "rlimit", None, 0


UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as the largest page-aligned number


def _memory_cgroup(listed: str | None = None) -> tuple[Path, int] | None:
    """This process's memory cgroup (``listed``: /proc/self/cgroup's text) and the smallest
    memory limit on it or above it (a scheduler limits the job's cgroup and puts each task
    in a child), or None where no ancestor sets one."""
    try:
        lines = (listed or Path("/proc/self/cgroup").read_text()).splitlines()
    except OSError:
        return None
    where = None
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            where, limit_file = CGROUP / "memory" / path.lstrip("/"), "memory.limit_in_bytes"
            break
        if controllers == "" and (CGROUP / "cgroup.controllers").exists():
            where, limit_file = CGROUP / path.lstrip("/"), "memory.max"
    if where is None or not where.is_dir():
        return None
    smallest = UNLIMITED
    for folder in (where, *where.parents):
        if CGROUP not in folder.parents:
            break
        try:
            raw = (folder / limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            smallest = min(smallest, int(raw))
    return (where, smallest) if smallest < UNLIMITED else None


def _oom_kills(cgroup: Path) -> int:
    """The kernel's count of processes it killed for memory in this cgroup (v2
    memory.events, v1 memory.oom_control; 0 where neither is readable)."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            for line in (cgroup / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    return int(value)
        except OSError:
            continue
    return 0


def _write(path: Path, value: str, quiet: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        if not quiet:
            raise ReproError(f"setting the job's limit {path.name} ({e.strerror or e})") from None
