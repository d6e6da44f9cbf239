"""The limits of a job run outside a container engine (Charliecloud): which mechanism holds
its memory, CPU quota and processes here, the cgroups made for it, and whether it was
killed for memory. A cgroup where repro may make one (root: cgroup v2, else v1); inside a
Slurm job's cgroup none (Slurm's limits hold, and a cgroup made elsewhere would take the
job out of Slurm's count); otherwise a per-process data rlimit, and the record says so."""

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

    @classmethod
    def plan(cls, job: JobSpec) -> Limits:
        kind = _cgroup_kind()
        unenforced = []
        if kind == "rlimit":
            unenforced = [
                "the job's total memory (a per-process data limit only)",
                "its CPU quota (whole cores by affinity only)",
            ]
        return cls(job.memory_bytes, job.cpus, kind, unenforced=unenforced)

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
            "slurm": "the Slurm job's cgroup (its --mem)",
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

    def oom_killed(self) -> bool:
        for cg in map(Path, self.cgroups):
            for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
                try:
                    for line in (cg / name).read_text().splitlines():
                        k, _, v = line.partition(" ")
                        if k == key and v.strip().isdigit() and int(v) > 0:
                            return True
                except OSError:
                    continue
        return False

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


def _cgroup_kind() -> str:
    """How limits are held here: inside a Slurm job's cgroup Slurm's hold (a cgroup made
    elsewhere would take the job out of it); as root, a cgroup of repro's; else a rlimit."""
    from .. import settings

    forced = settings.ch_limits()
    if forced is not None:
        return forced
    try:
        mine = Path("/proc/self/cgroup").read_text()
    except OSError:
        mine = ""
    if "slurm" in mine and os.environ.get("SLURM_JOB_ID"):
        return "slurm"
    if os.geteuid() == 0:
        if (CGROUP / "cgroup.controllers").exists():
            return "cgroup v2"
        if (CGROUP / "memory" / "memory.limit_in_bytes").exists():
            return "cgroup v1"
    return "rlimit"


def _write(path: Path, value: str, quiet: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        if not quiet:
            raise ReproError(f"setting the job's limit {path.name} ({e.strerror or e})") from None
