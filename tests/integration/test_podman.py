"""podman through the same executor: its Docker-compatible API socket (`podman system service`),
started here as root with the vfs storage driver and `default_ulimits = []` (this machine's
hard rlimits are below podman's defaults), driven by the same DockerEngine code."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.engine import connect
from orchestrator.store import open_store
from tests.helpers import repro
from tests.integration.test_launch import PROBED, probe_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def podman(tmp_path_factory, images, engine):
    """A podman API service on a socket of its own, holding the base image (loaded from
    the Docker engine, tags and labels included); yields the socket's URL."""
    binary = shutil.which("podman")
    assert binary, "podman is not installed; run scripts/ensure-docker"
    root = tmp_path_factory.mktemp("podman")
    conf = root / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    sock = root / "podman.sock"
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    proc = subprocess.Popen([binary, "--storage-driver=vfs", "--root", str(root / "storage"),
                             "--runroot", str(root / "run"), "system", "service", "--time=0",
                             f"unix://{sock}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
            break
        except OSError:
            time.sleep(0.2)
    url = f"unix://{sock}"
    saved = os.environ.get("REPRO_PODMAN_HOST")
    os.environ["REPRO_PODMAN_HOST"] = url
    try:
        pod = connect("podman")
        base = engine.image(images["base"])
        pod.load(engine.save(next(t for t in base["tags"] if not t.endswith(":latest"))))
        assert pod.image(images["base"]) is not None
        yield url
    finally:
        if saved is None:
            os.environ.pop("REPRO_PODMAN_HOST", None)
        proc.terminate()
        proc.wait(timeout=30)


def test_a_run_under_podman_is_the_same_record_and_replays_identical(proj, podman):
    env = {"REPRO_EXECUTOR": "podman", "REPRO_PODMAN_HOST": podman}
    spec = proj / "specs" / "hello.yaml"
    p = repro("launch", str(spec.relative_to(proj)), "--json", cwd=proj, env=env)
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    assert rec["status"] == "succeeded" and rec["environment"]["host"]["engine"] == "podman"
    assert list(rec["outputs"]) == ["hello.txt"]
    p = repro("replay", rec["id"], "--json", cwd=proj, env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verdict"]["result"] == "identical"
    pod = connect("podman")
    assert pod.find({"org.repro.run": rec["id"]}) == []  # cleaned up there too


def test_podman_runs_the_job_unprivileged_too(proj, podman):
    spec = probe_spec(proj)
    env = {"REPRO_EXECUTOR": "podman", "REPRO_PODMAN_HOST": podman}
    p = repro("launch", str(spec.relative_to(proj)), "--json", cwd=proj, env=env)
    rec = json.loads(p.stdout)
    assert p.returncode == 0, rec["stderr_tail"]
    out = json.loads(Path(open_store().artifacts.local_path(
        rec["outputs"]["probe.json"]["sha256"])).read_text())
    assert out.pop("machine_id") == rec["environment"]["container"]["machine_id"]
    assert out == PROBED  # hostname repro, machine-id read-only, under podman too
