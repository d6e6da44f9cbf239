"""A real single-node Slurm cluster for the tests: Debian's slurm-wlm and munge, slurmctld and
slurmd on this host with a generated slurm.conf in a temporary folder, stopped after.

munged runs as the munge user on its default socket (started once, left running: other
tests and processes share it). The Slurm daemons run as root (``SlurmUser=root``) with their
state, spool, logs and ports in the folder, so a test cluster never touches /etc/slurm.
Every Slurm command finds it through ``SLURM_CONF``. ``scripts/ensure-slurm`` installs the
packages when they are missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


@dataclass
class SlurmCluster:
    folder: Path
    conf: Path
    node: str

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env={**os.environ, **self.env}, capture_output=True,
                              text=True, check=check, timeout=60)

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld"):
            pid = self.folder / f"{name}.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().strip()), 15)
                except (OSError, ValueError):
                    pass
        time.sleep(0.5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_munge() -> None:
    if MUNGE_SOCKET.exists():
        probe = subprocess.run(["munge", "-n"], capture_output=True)
        if probe.returncode == 0:
            return
    run_dir = MUNGE_SOCKET.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True,
                   capture_output=True)
    for _ in range(50):
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("munged did not start")


def start(base: Path, cpus: int | None = None, memory_mb: int | None = None,
          cgroups: bool = False) -> SlurmCluster:
    if shutil.which("slurmctld") is None:
        raise RuntimeError("slurmctld not found: run scripts/ensure-slurm")
    ensure_munge()
    folder = base / "slurm"
    for sub in ("state", "spool", "log"):
        (folder / sub).mkdir(parents=True)
    node = socket.gethostname().split(".")[0]
    cpus = cpus or os.cpu_count() or 1
    if memory_mb is None:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
        memory_mb = max(1024, total - 2048)
    conf = folder / "slurm.conf"
    conf.write_text(f"""\
ClusterName=repro-test
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
StateSaveLocation={folder / 'state'}
SlurmdSpoolDir={folder / 'spool'}
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd.pid'}
SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}
SlurmdLogFile={folder / 'log' / 'slurmd.log'}
{_plugins(folder, cgroups)}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
KillWait=30
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
NodeName={node} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    cluster = SlurmCluster(folder, conf, node)
    env = {**os.environ, **cluster.env}
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True, capture_output=True)
    subprocess.run(["slurmd", "-f", str(conf), "-N", node], env=env, check=True,
                   capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        if p.returncode == 0 and p.stdout.strip() in ("idle", "idle*", "mixed"):
            return cluster
        time.sleep(0.5)
    log = (folder / "log" / "slurmctld.log").read_text()[-2000:] if (
        folder / "log" / "slurmctld.log").exists() else ""
    cluster.stop()
    raise RuntimeError(f"the test Slurm cluster did not come up: {log}")


def _plugins(folder: Path, cgroups: bool) -> str:
    """How the node holds its jobs: by cgroups (what clusters run: the job's memory is
    Slurm's, and every process of it is found by its cgroup) or by the process list."""
    if not cgroups:
        return "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none"
    version = "v2" if (Path("/sys/fs/cgroup") / "cgroup.controllers").exists() else "v1"
    (folder / "cgroup.conf").write_text(f"""\
CgroupPlugin=cgroup/{version}
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
""")
    return "ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup,task/affinity"
