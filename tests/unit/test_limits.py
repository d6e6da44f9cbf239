"""How a Charliecloud job's limits are found when a scheduler holds them: the memory cgroup
of this process and the smallest limit above it, and the kernel's oom count there."""

from __future__ import annotations

from orchestrator.engine import limits

V1 = """\
9:name=systemd:/
6:freezer:/slurm_vm/uid_0/job_1/step_batch
4:memory:/slurm_vm/uid_0/job_1/step_batch/task_0
3:cpuset:/slurm_vm/uid_0/job_1/step_batch
0::/
"""


def _tree(root, limit_of_job: int) -> None:
    job = root / "memory" / "slurm_vm" / "uid_0" / "job_1"
    task = job / "step_batch" / "task_0"
    task.mkdir(parents=True)
    for folder in (root / "memory", root / "memory" / "slurm_vm", job, job / "step_batch",
                   task):
        (folder / "memory.limit_in_bytes").write_text(f"{limits.UNLIMITED * 2 - 4096}\n")
    (job / "memory.limit_in_bytes").write_text(f"{limit_of_job}\n")
    (task / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")


def test_the_smallest_limit_above_the_task_is_the_one_that_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "CGROUP", tmp_path)
    _tree(tmp_path, 320 << 20)
    found = limits._memory_cgroup(V1)
    assert found is not None
    where, held = found
    assert where == tmp_path / "memory/slurm_vm/uid_0/job_1/step_batch/task_0"
    assert held == 320 << 20
    assert limits._oom_kills(where) == 2


def test_no_limit_anywhere_is_none_and_the_rlimit_or_repros_cgroup_holds(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(limits, "CGROUP", tmp_path)
    _tree(tmp_path, limits.UNLIMITED * 2 - 4096)
    assert limits._memory_cgroup(V1) is None
    assert limits._memory_cgroup("garbage without colons\n") is None
    assert limits._oom_kills(tmp_path / "nowhere") == 0


def test_cgroup_v2_reads_memory_max(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "CGROUP", tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    step = tmp_path / "system.slice" / "slurmstepd.scope" / "job_7" / "step_0" / "user"
    step.mkdir(parents=True)
    (step / "memory.max").write_text("max\n")
    (step.parent.parent / "memory.max").write_text(f"{1 << 30}\n")
    (step / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    found = limits._memory_cgroup("0::/system.slice/slurmstepd.scope/job_7/step_0/user\n")
    assert found == (step, 1 << 30)
    assert limits._oom_kills(step) == 1
