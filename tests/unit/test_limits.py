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


def _job(cpus: float = 1.5, memory: int = 512 << 20):
    from orchestrator.engine import JobSpec

    return JobSpec(run_id="r" * 16, image="sha256:" + "0" * 64, command=["true"], cpus=cpus,
                   memory_bytes=memory)


def test_as_root_on_cgroup_v2_a_cgroup_of_repros_holds_memory_cpu_and_processes(
        tmp_path, monkeypatch):
    """This machine is cgroup v1: v2's files are checked on a folder standing in for
    /sys/fs/cgroup (the real v1 path is exercised by the integration tests)."""
    monkeypatch.setattr(limits, "CGROUP", tmp_path)
    monkeypatch.setattr(limits.os, "geteuid", lambda: 0)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("REPRO_CH_LIMITS", raising=False)
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    held = limits.Limits.plan(_job())
    assert held.kind == "cgroup v2" and held.unenforced == []
    held.create("ch-job")
    cg = tmp_path / "repro" / "ch-job"
    assert held.cgroups == [str(cg)]
    assert (cg / "memory.max").read_text() == str(512 << 20)
    assert (cg / "memory.swap.max").read_text() == "0"
    assert (cg / "cpu.max").read_text() == "150000 100000"
    assert (cg / "pids.max").read_text() == "4096"
    assert (tmp_path / "repro" / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    said = held.said("0,1", "none")
    assert said["memory"] == "cgroup v2 memory.max" and said["cores"] == "affinity 0,1"
    (cg / "memory.events").write_text("oom 1\noom_kill 1\n")
    assert held.oom_killed()


def test_an_ordinary_user_gets_the_rlimit_and_strict_is_told_what_is_not_held(
        tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "CGROUP", tmp_path)
    monkeypatch.setattr(limits.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("REPRO_CH_LIMITS", raising=False)
    held = limits.Limits.plan(_job())
    assert held.kind == "rlimit" and len(held.unenforced) == 2
    assert held.said(None, "bridge")["cpu_quota"] == "not enforced"
    assert "rlimit only" in limits.here()


def test_removal_touches_only_repros_own_cgroups(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "CGROUP", tmp_path / "cgroup")
    outside = tmp_path / "elsewhere" / "repro" / "ch-x"
    theirs = tmp_path / "cgroup" / "memory" / "slurm" / "job_1"
    ours = tmp_path / "cgroup" / "memory" / "repro" / "ch-x"
    for folder in (outside, theirs, ours):
        folder.mkdir(parents=True)
    limits.Limits.remove_all([str(outside), str(theirs), str(ours)])
    assert outside.is_dir() and theirs.is_dir() and not ours.exists()


def test_an_oom_under_slurms_cgroup_names_that_limit_and_the_record_says_the_same():
    held = limits.Limits(64 << 20, 1.0, "slurm", held_by=limits.CGROUP / "memory" / "slurm_x",
                         held_bytes=320 << 20)
    assert held.held_limit() == "the Slurm job's cgroup (320 MiB for the job and repro)"
    assert held.said(None, "none")["memory"] == held.held_limit()
    assert limits.Limits(64 << 20, 1.0, "cgroup v1").held_limit() is None
