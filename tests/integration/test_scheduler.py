"""The scheduler seam: a scheduler is one module and one ``SCHEDULERS`` entry. A fake one,
registered for the test, takes a real launch (resolved here with the real engine and
store) through submit, follow and cancel, and renders a dry run, with no other change."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from orchestrator import cli
from orchestrator.errors import UsageError
from orchestrator.scheduler import SCHEDULERS
from tests import fake_scheduler


@pytest.fixture
def fake(monkeypatch, proj):
    monkeypatch.setitem(SCHEDULERS, "fake", "tests.fake_scheduler")
    monkeypatch.chdir(proj)
    fake_scheduler.asked.clear()
    return fake_scheduler.asked


def repro(*args: str):
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result


def test_a_scheduler_registered_by_one_entry_takes_launch_follow_and_cancel(fake):
    done = repro("launch", "specs/hello.yaml", "--executor", "fake", "--partition", "gpu",
                 "--json")
    assert done.exit_code == 0, done.output
    record = json.loads(done.stdout)
    assert record["status"] == "succeeded"
    assert record["executor"] == {"kind": "fake", "job_id": "7", "queue": "gpu"}
    assert fake == [("require_shared_store", None), ("submit", record["id"]),
                    ("follow", record["id"])]

    fake.clear()
    queued = repro("launch", "specs/hello.yaml", "--executor", "fake", "--detach", "--json")
    run = json.loads(queued.stdout)["id"]
    assert json.loads(queued.stdout)["status"] == "queued" and queued.exit_code == 0
    cancelled = repro("cancel", run, "--json")
    assert cancelled.exit_code == 0, cancelled.output
    assert json.loads(cancelled.stdout) == [{"id": run, "status": "interrupted",
                                             "reason": "cancelled on the fake cluster"}]
    assert fake[-1] == ("cancel", [run])

    dry = repro("launch", "specs/hello.yaml", "--executor", "fake", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.startswith("fake job for run ")
    assert dry.stdout.rstrip().endswith("on default")


def test_an_unknown_scheduler_is_one_line_naming_the_registered_ones(fake):
    done = CliRunner().invoke(cli.app, ["launch", "specs/hello.yaml", "--executor", "lsf"])
    assert isinstance(done.exception, UsageError)  # main() prints it, exit code 2
    assert str(done.exception) == "--executor 'lsf': use local (this machine's engine: " \
                                  "docker or podman) or one of: slurm, k8s, fake"
    assert fake == []


def test_a_sweep_goes_to_a_scheduler_only_with_its_array_capability(fake, monkeypatch):
    """Sweeps reach a scheduler through the optional ``ArrayScheduler`` capability: without
    it a sweep is refused naming those that have it; given it, the points go as one array."""
    args = ["sweep", "specs/digits-mlp.yaml", "--grid", "lr=0.1,0.2", "--executor", "fake"]
    refused = CliRunner().invoke(cli.app, args)
    assert isinstance(refused.exception, UsageError)
    assert str(refused.exception) == "--executor fake: a sweep runs here or on slurm"

    arrays: list[list[str]] = []

    def submit_array(records, store, opts, parallel, on_line):
        arrays.append([r.id for r in records])
        for record in records:
            fake_scheduler.submit(record, store, opts, on_line)
        return "8"

    def follow_all(store, records, on_done):
        done = [fake_scheduler.follow(store, r, lambda _: None, lambda _: None)
                for r in records]
        for record in done:
            on_done(record)
        return done

    monkeypatch.setattr(fake_scheduler, "submit_array", submit_array, raising=False)
    monkeypatch.setattr(fake_scheduler, "follow_all", follow_all, raising=False)
    swept = repro(*args, "--json")
    assert swept.exit_code == 0, swept.output
    doc = json.loads(swept.stdout)
    assert doc["points"] == 2 and doc["failed"] == 0
    assert len(arrays) == 1 and sorted(arrays[0]) == sorted(r["id"] for r in doc["runs"])
    assert {r["status"] for r in doc["runs"]} == {"succeeded"}
