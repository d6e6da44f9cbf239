"""The run lifecycle against the shared fake executor (tests/fakes.py) and a real store:
every ending (success, failure, OOM, timeout, interrupt, lost engine, a create that fails,
an ingest that raises, a sweep's cancel) is a recorded outcome, the job is always cleaned up,
the owner released, and a record and its series committed together."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.errors import ExitCode
from orchestrator.record import RunStatus
from orchestrator.runner import Hooks, launch
from orchestrator.spec import load_spec
from orchestrator.store import open_store
from tests.fakes import FakeEngine, Script
from tests.helpers import make_repo
from tests.unit.test_resolve import SPEC


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REPRO_ARCHIVE_IMAGES", "0")
    repo = make_repo(tmp_path / "repo", {"spec.yaml": SPEC, "job/train.py": "print(1)\n",
                                         "data.bin": "0123456789"})
    return load_spec(repo / "spec.yaml")


def run(spec, tmp_path, script: Script, hooks: Hooks | None = None):
    store = open_store(tmp_path / "home")
    engine = FakeEngine(script)
    lines: list[str] = []
    logs: list[bytes] = []
    hooks = hooks or Hooks(on_line=lines.append, on_log=logs.append)
    record = launch(spec, store, engine, hooks=hooks)
    assert store.runs.get(record.id) == record  # what was returned is what was stored
    assert store.local.owner(record.id) is None  # released
    assert not store.work_path(record.id).exists()  # the job's folder is freed
    return record, store, engine


@pytest.mark.process
def test_a_successful_job_is_recorded_whole(spec, tmp_path):
    script = Script(metrics=[{"name": "loss", "value": 1.0, "step": 0},
                             {"name": "loss", "value": 0.5, "step": 1}])
    record, store, engine = run(spec, tmp_path, script)
    assert record.status == RunStatus.SUCCEEDED and record.exit_code == 0
    assert record.status.exit_code == ExitCode.OK
    assert store.artifacts.check(record.outputs["w.bin"].sha256) == "ok"
    assert b"".join(store.artifacts.chunks(record.logs.sha256)) == b"epoch 1\ndone\n"
    assert record.metrics == {"loss": 0.5} and store.runs.steps(record.id) == {
        "loss": [(0, 1.0), (1, 0.5)]}
    assert record.environment.host.engine == "fake"
    assert record.environment.model_dump()["container"]["packages"] == [
        {"name": "numpy", "version": "1.24.2"}]
    assert record.stderr_tail == "a warning on stderr\n"
    job = next(arg for call, arg in engine.calls if call == "run")
    assert ("cleanup", "job-0") in engine.calls
    assert {v.name for v in job.volumes} == {"code", "lib", "run", "outputs", "meta",
                                             "input:data", "machine-id"}
    assert job.hostname == "repro"
    mid = record.environment.container.machine_id
    assert len(mid) == 32 and record.environment.container.hostname == "repro"
    assert job.network == "none" and job.user == "65534:65534" and job.gpus is None
    assert job.env["OMP_NUM_THREADS"] == "2" and job.labels["org.repro.run"] == record.id


@pytest.mark.parametrize("script, status, reason", [
    (Script(code=3), RunStatus.FAILED, "the job exited with code 3"),
    (Script(code=137, oom=True), RunStatus.FAILED, "oom-killed: the job exceeded "
     "resources.memory (1g)"),
    (Script(timed_out=True), RunStatus.TIMEOUT, "timed out; stopped"),
    (Script(interrupted=True), RunStatus.INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)"),
    (Script(lost="lost the engine while the job ran: cannot reach it"), RunStatus.LOST,
     "lost the engine while the job ran"),
    (Script(code=86, env_json={"lock_problems": ["numpy==2 is pinned but 1 is installed"]}),
     RunStatus.FAILED, "package lock mismatch: numpy==2 is pinned but 1 is installed"),
])
@pytest.mark.process
def test_every_ending_is_a_recorded_outcome(spec, tmp_path, script, status, reason):
    record, _, engine = run(spec, tmp_path, script)
    assert record.status == status and reason in (record.reason or "")
    assert ("cleanup", "job-0") in engine.calls
    assert record.finished_at and record.duration_s is not None
    assert record.outputs  # whatever the job left is kept


@pytest.mark.process
def test_a_job_that_cannot_be_created_fails_before_running(spec, tmp_path):
    record, _, engine = run(spec, tmp_path, Script(create_fails=True))
    assert record.status == RunStatus.FAILED and "no space" in record.reason
    assert record.started_at is None and not [c for c in engine.calls if c[0] == "cleanup"]


@pytest.mark.process
def test_an_ingest_that_raises_fails_the_run_with_the_reason(spec, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("orchestrator.ingest.collect", broken)
    record, _, engine = run(spec, tmp_path, Script())
    assert record.status == RunStatus.FAILED
    assert record.reason == "storing outputs: RuntimeError: disk on fire"
    assert ("cleanup", "job-0") in engine.calls


@pytest.mark.process
def test_a_sweep_cancel_makes_the_run_interrupted(spec, tmp_path):
    cancel = threading.Event()
    record, _, _ = run(spec, tmp_path, Script(during=lambda job: cancel.set()),
                       Hooks(cancel=cancel))
    assert record.status == RunStatus.INTERRUPTED
    assert "with the runs started beside it" in record.reason
    assert record.status.exit_code == ExitCode.INTERRUPTED


@pytest.mark.process
def test_the_record_says_running_while_the_job_runs(spec, tmp_path):
    seen: list[RunStatus] = []
    store_home = tmp_path / "home"

    def look(job):
        store = open_store(store_home)
        seen.append(store.runs.get(job.run_id).status)
        seen.append(RunStatus.RUNNING if store.local.owner(job.run_id) else RunStatus.LOST)
        store.close()

    run(spec, tmp_path, Script(during=look))
    assert seen == [RunStatus.RUNNING, RunStatus.RUNNING]  # recorded running, and owned


@pytest.mark.process
def test_container_facts_are_captured_from_outside_once_and_else_labelled(spec, tmp_path):
    """Issue 21, M6: the container's facts come from a throwaway container of the image
    (cached per image and lock on this machine); where none could run, what the job's boot
    script wrote is recorded labelled as the job's report, with a warning saying why."""
    record, store, engine = run(spec, tmp_path, Script())
    assert [c for c, _ in engine.calls].count("facts") == 1
    facts_job = next(arg for call, arg in engine.calls if call == "facts")
    assert facts_job.network == "none" and facts_job.user == "65534:65534"
    assert {v.name for v in facts_job.volumes} <= {"lib", "lock", "vendor"}  # nothing of a run
    assert record.environment.container.captured == "image"
    again, _, engine2 = run(spec, tmp_path, Script(env_json={"os": "Changed"}))
    assert "facts" not in [c for c, _ in engine2.calls]  # cached: no second container
    assert again.environment.container.os == record.environment.container.os

    other = tmp_path / "other"
    other.mkdir()
    lost, _, _ = run(spec, other, Script(env_json=None))  # no python3 to say what it is
    assert lost.environment.container.captured == "job"
    assert any("could not be captured (python3: not found); the container facts recorded "
               "are the job's own report" in w for w in lost.warnings)
