"""Integration fixtures: the real Docker daemon and images built from images/ recipes."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.engine import LABEL_RUN, LABEL_STORE, Engine, connect
from orchestrator.engine.images import build
from tests.helpers import ROOT, git, repro

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def engine() -> Engine:
    e = connect()
    e.version()  # fails loudly (never skips) when no engine runs: CI must have one
    return e


@pytest.fixture(scope="session")
def images(engine: Engine) -> dict[str, str]:
    """Build (or reuse) the recipes once per session; returns name -> image id."""
    return {name: build(ROOT / "images" / name, engine, on_line=lambda _: None).id
            for name in ("base", "train")}


@pytest.fixture
def proj(project: Path, home: Path, images: dict[str, str], engine: Engine):
    """A clean project + store; after the test, no container of this store may remain."""
    yield project
    left = engine.find({LABEL_STORE: str(home.resolve())})
    for job in left:
        engine.cleanup(job.id)
    assert left == [], "repro left containers behind"


def add_spec(project: Path, name: str, body: str) -> Path:
    """Write specs/NAME.yaml (base image, hello code folder unless given) and commit it."""
    text = textwrap.dedent(body)
    if "image:" not in text:
        text = "image: {build: ../images/base}\n" + text
    if "code:" not in text:
        text = "code: {path: ../examples/hello}\n" + text
    path = project / "specs" / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\n" + text)
    git(project, "add", "-A")
    git(project, "commit", "-qm", f"spec {name}")
    return path


def launch_json(project: Path, spec: Path, *args: str, timeout: float = 300,
                env: dict | None = None):
    p = repro("launch", str(spec.relative_to(project)), "--json", *args, cwd=project,
              timeout=timeout, env=env)
    assert "Traceback" not in p.stderr, p.stderr
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


def wait_for_running(engine: Engine, home: Path, count: int = 1, timeout: float = 60) -> str:
    """Wait until ``count`` containers of the store at ``home`` run (other stores', say of a
    parallel test session, are ignored), then a moment more for the job to print and write;
    returns the run id of one of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [j for j in engine.find({LABEL_STORE: str(home.resolve())}) if j.running]
        if len(running) >= count:
            time.sleep(1.5)
            return running[0].labels[LABEL_RUN]
        time.sleep(0.2)
    raise AssertionError(f"{count} container(s) did not start within {timeout} s")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """One real single-node Slurm cluster for the session (tests/slurm.py), holding its jobs
    by cgroups as clusters do (Slurm's memory limit, cores and kill act on a job's whole
    process tree); never skipped: CI runs scripts/ensure-slurm first, and missing binaries
    fail loudly."""
    from tests import slurm

    cluster = slurm.start(tmp_path_factory.mktemp("slurm"), cgroups=True)
    yield cluster
    cluster.stop()


@pytest.fixture
def on_slurm(slurm_cluster, tmp_path, monkeypatch):
    """A test's environment for --executor slurm: the cluster's configuration and stores
    every node can reach (SQLite and a folder; on this one-node cluster, local paths)."""
    (tmp_path / "shared-artifacts").mkdir()
    env = {"SLURM_CONF": str(slurm_cluster.conf),
           "REPRO_STORE": str(tmp_path / "team.db"),
           "REPRO_ARTIFACTS": str(tmp_path / "shared-artifacts")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
