"""The Slurm seam without a cluster: resources mapped to sbatch options, Slurm durations,
and Slurm's endings reconciled into a record only when the node recorded none."""

from __future__ import annotations

import pytest

from orchestrator import slurm
from orchestrator.record import RunRecord, RunStatus
from orchestrator.store import open_store
from tests.unit.test_store import record


def test_resources_become_sbatch_options(tmp_path):
    r = record("a")
    r.resolved.resources.cpus = 2.5
    r.resolved.resources.memory_bytes = 3 << 30
    r.resolved.resources.gpus = {"count": 2, "model": "NVIDIA H100"}
    r.resolved.timeout_s = 3600
    opts = slurm.SlurmOptions(partition="gpu", account="ml", qos="high", extra=["--exclusive"])
    args = slurm.sbatch_options(r, opts, tmp_path / "x.out")
    # the job and repro's own process
    assert "--cpus-per-task=3" in args and f"--mem={3072 + slurm.RUNNER_MIB}M" in args
    assert "--gres=gpu:h100:2" in args and "--time=61" in args
    assert args[-4:] == ["--partition=gpu", "--account=ml", "--qos=high", "--exclusive"]
    text = slurm.script(r, opts, tmp_path)
    assert text.startswith("#!/bin/sh\n") and f"node-run {r.id}" in text


@pytest.mark.parametrize("text, expected", [
    ("00:01:00", 60), ("1:30", 90), ("2-00:00:10", 172810), ("UNLIMITED", None), ("", None)])
def test_slurm_durations(text, expected):
    assert slurm.seconds(text) == expected


def test_the_node_record_wins_and_slurm_endings_fill_in(tmp_path, monkeypatch):
    store = open_store(tmp_path / "h")
    r = record("b")
    r.executor = {"kind": "slurm", "job_id": "7"}
    store.runs.insert(r)
    r.status = RunStatus.QUEUED
    store.runs.save(r, previous=RunStatus.PENDING)
    monkeypatch.setattr(slurm, "job_state", lambda job: ("RUNNING", "None"))
    assert slurm.reconcile(store, r, waited=0).status == RunStatus.QUEUED  # still going
    monkeypatch.setattr(slurm, "job_state", lambda job: ("TIMEOUT", "TimeLimit"))
    done = slurm.reconcile(store, r, waited=0)
    assert done.status == RunStatus.TIMEOUT and "time limit" in done.reason
    assert store.runs.get(r.id).status == RunStatus.TIMEOUT
    for state, status in (("NODE_FAIL", RunStatus.LOST), ("CANCELLED", RunStatus.INTERRUPTED),
                          ("GONE", RunStatus.LOST)):
        q = record(state.lower()[:6])
        q.executor = {"kind": "slurm", "job_id": "8"}
        store.runs.insert(q)
        q.status = RunStatus.QUEUED
        store.runs.save(q, previous=RunStatus.PENDING)
        monkeypatch.setattr(slurm, "job_state", lambda job, s=state: (s, ""))
        assert slurm.reconcile(store, q, waited=0).status == status


def test_a_stop_past_the_time_limit_is_a_timeout(monkeypatch):
    monkeypatch.setattr(slurm, "job_fields", lambda job: {
        "JobState": "COMPLETING", "TimeLimit": "00:01:00", "RunTime": "00:01:00"})
    assert slurm.stopped_why("3")[0] == RunStatus.TIMEOUT
    monkeypatch.setattr(slurm, "job_fields", lambda job: {
        "JobState": "COMPLETING", "TimeLimit": "00:10:00", "RunTime": "00:00:05"})
    assert slurm.stopped_why("3") == (RunStatus.INTERRUPTED,
                                      "stopped by Slurm (scancel, or preempted)")


def test_a_job_id_from_a_shared_record_is_checked_before_slurm_sees_it(tmp_path):
    store = open_store(tmp_path / "h")
    r = record("c")
    r.executor = {"kind": "slurm", "job_id": "--user=alice"}  # a hostile teammate's record
    with pytest.raises(slurm.UsageError, match="not a job id"):
        slurm.cancel(store, [r])
    r.executor["job_id"] = "12_3"
    assert slurm.job_of(r) == "12_3"


@pytest.mark.parametrize("kwargs, problem", [
    ({"partition": "gpu\n#SBATCH --uid=0"}, "--partition 'gpu\\n#SBATCH --uid=0': give one"),
    ({"account": "a\x1b[2J"}, "--account 'a\\x1b[2J': give one"),
    ({"extra": ["--exclusive", "/tmp/evil.sh"]}, "'/tmp/evil.sh' is not an option"),
    ({"extra": ["--constraint", "gpu"]}, "(--constraint=gpu, not --constraint gpu)"),
    ({"extra": ["--comment=x\ny"]}, "--sbatch-option '--comment=x\\ny': give one"),
])
def test_slurm_options_are_one_printable_line_each_and_options_only(kwargs, problem):
    """Issue 21, I1: options from the command line were not checked for newlines, and a
    bare word before the job script would become the script sbatch runs."""
    import re

    from orchestrator.errors import UsageError
    from orchestrator.slurm import SlurmOptions

    with pytest.raises(UsageError, match=re.escape(problem)):
        SlurmOptions(**kwargs)
    assert SlurmOptions(extra=["--constraint=gpu", "--exclusive"]).extra[0] == "--constraint=gpu"


def test_a_record_from_before_judging_reads_with_placement_and_judging_apart():
    """Node-judged replays kept their tolerances and --strict-env inside ``executor``."""
    from tests.unit.test_store import record

    doc = record("ab").model_dump(mode="json")
    doc["executor"] = {"kind": "slurm", "job_id": "7", "partition": "gpu",
                       "tolerances": {"loss": 0.5}, "strict_env": True}
    old = RunRecord.model_validate(doc)
    assert old.executor == {"kind": "slurm", "job_id": "7", "partition": "gpu"}
    assert old.judging is not None and old.judging.tolerances == {"loss": 0.5}
    assert old.judging.strict_env is True
    again = RunRecord.model_validate(old.model_dump(mode="json"))
    assert again == old  # written back as two fields, read back the same
    doc["executor"] = {"tolerances": {}, "strict_env": False}  # a replay never submitted
    assert RunRecord.model_validate(doc).executor is None
