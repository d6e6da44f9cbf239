"""`repro launch --executor k8s --dry-run` on a real store, with the image pushed to a real
registry: the rendered documents are valid Kubernetes objects, and what the init container
runs (`repro fetch`) lays out exactly what the job container reads."""

from __future__ import annotations

import yaml

from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json
from tests.integration.test_replay import run_json, serve_registry
from tests.unit.test_k8s import _round_trip


def test_a_dry_run_renders_a_valid_job_and_fetch_lays_out_the_run(proj, images, tmp_path):
    spec = add_spec(proj, "k8s-hello", "command: [python3, /repro/code/hello.py]\nseed: 2\n")
    p = repro("launch", "specs/k8s-hello.yaml", "--executor", "k8s", cwd=proj)
    assert p.returncode == 2 and "--dry-run" in p.stderr
    p = repro("launch", "specs/k8s-hello.yaml", "--executor", "k8s", "--dry-run", cwd=proj)
    assert p.returncode == 2 and "in no registry" in p.stderr  # nodes pull by digest
    with serve_registry(tmp_path) as registry:
        p, pushed = run_json("image", "push", images["base"], f"{registry}/team/base",
                             cwd=proj)
        assert p.returncode == 0, p.stderr
        p = repro("launch", "specs/k8s-hello.yaml", "--executor", "k8s", "--dry-run",
                  cwd=proj)
    assert p.returncode == 0, p.stderr
    job, policy = list(yaml.safe_load_all(p.stdout))
    assert _round_trip(job, "V1Job") == job
    assert _round_trip(policy, "V1NetworkPolicy") == policy
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == pushed["ref"]
    p, rows = run_json("runs", cwd=proj)
    assert rows == []  # a dry run records nothing

    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    dest = tmp_path / "volume"
    p = repro("fetch", run["id"], "--into", str(dest), cwd=proj)
    assert p.returncode == 0, p.stderr
    assert (dest / "code" / "hello.py").is_file() and (dest / "lib" / "boot.sh").is_file()
    assert (dest / "run.json").is_file()
