"""Runs on a real single-node Slurm cluster (slurmctld, slurmd, munge; tests/slurm.py): the
same record as a local run, Slurm's job id and node recorded, replayable locally, cancelled,
stopped at Slurm's time limit, and never lost when the submitting process dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json
from tests.integration.test_replay import run_json

JOB = ("import time\nfor i in range(STEPS):\n    print('step', i, flush=True)\n"
       "    time.sleep(0.5)\nopen('/repro/outputs/done.txt', 'w').write('done')")
SLOW = f"command: [python3, -c, {json.dumps(JOB)}]\n"


def _wait_status(run_id: str, status: str, cwd, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p, shown = run_json("show", run_id, cwd=cwd)
        if shown and shown["status"] == status:
            return shown
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} never became {status}: {shown and shown['status']}")


def test_a_run_on_slurm_is_the_same_record_and_replays_identical_locally(proj, on_slurm):
    spec = proj / "specs" / "digits-mlp.yaml"
    p, run = launch_json(proj, spec, "--executor", "slurm", "--param", "epochs=3")
    assert p.returncode == 0, p.stderr
    assert run["status"] == "succeeded"
    assert run["executor"]["kind"] == "slurm" and run["executor"]["job_id"].isdigit()
    assert f"queued as Slurm job {run['executor']['job_id']}" in p.stderr
    assert "epoch" in p.stderr + p.stdout or run["metrics"]  # the job's output was followed
    assert run["environment"]["host"]["hostname"]  # the node that ran it
    p, local = launch_json(proj, spec, "--param", "epochs=3")  # the same spec here
    assert local["spec_digest"] == run["spec_digest"]  # where it ran is not what it is
    p, replay = run_json("replay", run["id"], cwd=proj)
    assert p.returncode == 0 and replay["verdict"]["result"] == "identical", p.stderr
    assert replay["executor"] is None


def test_the_job_script_maps_resources_and_the_store_must_be_shared(proj, on_slurm,
                                                                    monkeypatch):
    add_spec(proj, "mapped", """\
        command: [python3, /repro/code/hello.py]
        resources: {cpus: 1.5, memory: 3g}
        timeout: 10m
        """)
    p = repro("launch", "specs/mapped.yaml", "--executor", "slurm", "--dry-run",
              "--partition", "gpu", "--account", "ml", "--qos", "high",
              "--sbatch-option=--exclusive", cwd=proj)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for expected in ("#SBATCH --cpus-per-task=2", "#SBATCH --mem=3328M", "#SBATCH --time=11",
                     "#SBATCH --partition=gpu", "#SBATCH --account=ml", "#SBATCH --qos=high",
                     "#SBATCH --exclusive"):
        assert expected in lines, (expected, p.stdout)
    assert lines[-1].endswith("-m orchestrator node-run " + lines[-1].split()[-1])
    p, rows = run_json("runs", cwd=proj)
    assert rows == []  # a dry run records nothing
    monkeypatch.delenv("REPRO_ARTIFACTS")
    p = repro("launch", "specs/mapped.yaml", "--executor", "slurm", cwd=proj)
    assert p.returncode == 2 and "every node can reach" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_cancel_stops_a_running_job_and_records_it_interrupted(proj, on_slurm, engine, home):
    spec = add_spec(proj, "slow", SLOW.replace("STEPS", "120"))
    p, run = launch_json(proj, spec, "--executor", "slurm", "--detach")
    assert p.returncode == 0 and run["status"] == "queued", p.stderr
    _wait_status(run["id"], "running", proj)
    p, done = run_json("cancel", run["id"], cwd=proj)
    assert p.returncode == 0, p.stderr
    assert done[0]["status"] == "interrupted" and "stopped by Slurm" in done[0]["reason"]


def test_slurm_time_limit_ends_the_run_as_timeout(proj, on_slurm):
    spec = add_spec(proj, "too-slow", SLOW.replace("STEPS", "400"))
    p, run = launch_json(proj, spec, "--executor", "slurm", "--sbatch-option=--time=1",
                         timeout=300)
    assert run["status"] == "timeout", (run["status"], run["reason"], p.stderr[-2000:])
    assert "time limit" in run["reason"]
    assert p.returncode == 6


def test_killing_the_submitting_process_never_loses_the_run(proj, on_slurm):
    add_spec(proj, "outlives", SLOW.replace("STEPS", "12"))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                             "specs/outlives.yaml", "--executor", "slurm"], cwd=proj,
                            env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    run_id = None
    for line in proc.stderr:
        if "queued as Slurm job" in line:
            run_id = line.split()[1]
        if run_id and "step 2" in line:
            break
    assert run_id, "the launch never said it queued the run"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    p, done = run_json("wait", run_id, cwd=proj, timeout=120)
    assert p.returncode == 0, p.stderr
    assert done["status"] == "succeeded" and "done.txt" in done["outputs"]


def test_a_sweep_is_one_job_array_and_a_failing_point_stops_no_other(proj, on_slurm):
    job = ("import sys, pathlib; n = int(sys.argv[1]); "
           "pathlib.Path('/repro/outputs/n.txt').write_text(str(n)); sys.exit(3 if n == 2 else 0)")
    spec = add_spec(proj, "grid", f"command: [python3, -c, {json.dumps(job)}, '{{params.n}}']\n"
                    "params: {n: 0}\nseed: 1\n")
    p, out = run_json("sweep", str(spec.relative_to(proj)), "--grid", "n=0,1,2,3",
                      "--executor", "slurm", "-j", "2", cwd=proj, timeout=300)
    assert p.returncode == 3, p.stderr  # one point failed: the sweep says so
    assert "queued as Slurm job array" in p.stderr
    runs = {r["params"]["n"]: r for r in out["runs"]}
    assert sorted(runs) == [0, 1, 2, 3]
    assert [runs[n]["status"] for n in range(4)] == ["succeeded", "succeeded", "failed",
                                                     "succeeded"]
    p, rows = run_json("runs", "--where", f"sweep = {out['sweep']}", cwd=proj)
    arrays = set()
    for row in rows:
        _, shown = run_json("show", row["id"], cwd=proj)
        array, _, task = shown["executor"]["job_id"].partition("_")
        arrays.add(array)
        assert task.isdigit()
    assert len(arrays) == 1  # one sbatch for the whole sweep


def test_verify_on_slurm_replays_on_a_node_and_the_node_writes_the_verdict(proj, on_slurm):
    spec = add_spec(proj, "hello-verify", "command: [python3, /repro/code/hello.py]\nseed: 4\n")
    p, run = launch_json(proj, spec)  # launched here, verified on the cluster
    assert p.returncode == 0, p.stderr
    p, rec = run_json("verify", run["id"], "--executor", "slurm", "--tolerance",
                      "metrics.loss=0.5", cwd=proj)
    assert p.returncode == 0, p.stderr
    assert rec["verdict"]["result"] == "identical" and rec["replay_of"] == run["id"]
    assert rec["executor"]["kind"] == "slurm" and rec["executor"]["job_id"]
    # where it was placed apart from how its node judged it
    assert rec["judging"] == {"tolerances": {"loss": 0.5}, "strict_env": False}
    assert not {"tolerances", "strict_env"} & set(rec["executor"])
    p, shown = run_json("show", run["id"], cwd=proj)
    assert [r["verdict"] for r in shown["replays"]] == ["identical"]


def test_cancel_of_a_sweep_stops_its_running_and_queued_points(proj, on_slurm):
    add_spec(proj, "slow-grid", SLOW.replace("STEPS", "120").replace(
        "]\n", ", '{params.n}']\n") + "params: {n: 0}\nseed: 1\n")
    p, out = run_json("sweep", "specs/slow-grid.yaml", "--grid", "n=0,1,2", "--executor",
                      "slurm", "-j", "1", "--detach", cwd=proj)
    assert p.returncode == 0 and len(out["runs"]) == 3, p.stderr
    _wait_status(out["runs"][0], "running", proj)
    p, done = run_json("cancel", "--sweep", out["sweep"], cwd=proj, timeout=180)
    assert p.returncode == 0, p.stderr
    assert sorted(r["status"] for r in done) == ["interrupted"] * 3, done
    p, rows = run_json("runs", "--where", f"sweep = {out['sweep']}", cwd=proj)
    assert {r["status"] for r in rows} == {"interrupted"}


def test_slurm_keeps_only_the_environment_a_run_needs(proj, on_slurm, slurm_cluster):
    """Issue 21, L2: sbatch exported the whole submitting environment, secret values
    included, and slurmctld kept it in its state. It is now given an explicit one: what a
    node needs, the secrets the run asks for, no others."""
    spec = add_spec(proj, "envcheck", SLOW.replace("STEPS", "30") + "secrets: [RUN_TOKEN]\n")
    env = {"CLOUD_KEY": "leak-me-9f3a", "PGPASSWORD": "pg-leak-77c1", "RUN_TOKEN": "given-5e2b",
           "HTTPS_PROXY": "http://u:proxy-leak-1b2@proxy:3128"}
    p, run = launch_json(proj, spec, "--executor", "slurm", "--detach", env=env)
    assert p.returncode == 0, p.stderr
    assert "PGPASSWORD is not given to Slurm" in p.stderr
    job = run["executor"]["job_id"]
    saved = list((slurm_cluster.folder / "state").glob(f"hash.*/job.{job}/environment"))
    assert saved, "slurmctld keeps no environment file for the job"
    kept = saved[0].read_bytes()
    for leaked in ("leak-me-9f3a", "pg-leak-77c1", "proxy-leak-1b2"):
        assert leaked.encode() not in kept
    assert b"given-5e2b" in kept and b"REPRO_STORE=" in kept  # what the run needs
    assert run_json("cancel", run["id"], cwd=proj)[0].returncode == 0
