"""Launch against the real Docker daemon: the example, failures, limits, isolation."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.engine import LABEL_RUN
from orchestrator.store import open_store
from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json, wait_for_running

pytestmark = pytest.mark.integration

CONTRACT_TOP = {"schema_version", "id", "name", "status", "exit_code", "spec", "spec_digest",
                "resolved", "environment", "params", "metrics", "outputs", "started_at",
                "finished_at", "duration_s", "replay_of", "verdict"}


def test_digits_example_succeeds_and_records_everything(proj, home, images):
    p, rec = launch_json(proj, proj / "specs" / "digits-mlp.yaml")
    assert p.returncode == 0, p.stderr
    assert CONTRACT_TOP <= set(rec)
    assert rec["status"] == "succeeded" and rec["exit_code"] == 0 and rec["schema_version"] == 1
    # outputs: every recorded digest is the sha256 of the stored file
    assert set(rec["outputs"]) == {"metrics.json", "weights/w1.npy", "weights/b1.npy",
                                   "weights/w2.npy", "weights/b2.npy"}
    store = open_store(home)
    for ref in rec["outputs"].values():
        data = store.artifacts.local_path(ref["sha256"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == ref["sha256"] and len(data) == ref["size"]
    stored_metrics = json.loads(store.artifacts.local_path(
        rec["outputs"]["metrics.json"]["sha256"]).read_bytes())
    assert rec["metrics"]["accuracy"] == stored_metrics["accuracy"] > 0.7
    assert len(rec["series"]["loss"]) == 30  # the learning curve, through the helper
    assert rec["series"]["loss"][0][1] > rec["series"]["loss"][-1][1]
    # resolved: content addresses of everything
    r = rec["resolved"]
    assert r["image"]["digest"] == images["train"]
    assert r["code"]["commit"] and not r["code"]["dirty"]
    assert r["code"]["snapshot"].startswith("sha256:")
    assert r["inputs"]["digits"]["sha256"] == \
        "b848bcf7b9feb536fd325fa38de2994c0a48e0ec6850e6cb2e2b4dbff74270c9"
    assert r["packages"]["pins"] == {"numpy": "1.24.2"}
    assert r["env"]["OPENBLAS_NUM_THREADS"] == "1" and r["seed"] == 1234
    assert r["command"][2:] == ["--lr=0.1", "--hidden=32", "--epochs=30", "--batch-size=32"]
    assert rec["params"] == {"lr": 0.1, "hidden": 32, "epochs": 30, "batch_size": 32,
                             "n_train": 1600}  # the last one from repro.log_param
    # environment: host and container facts with real values
    host, cont = rec["environment"]["host"], rec["environment"]["container"]
    assert host["os"] and host["kernel"] and host["cpu"]["model"] and host["cpu"]["flags"]
    assert host["docker"] and host["gpus"] == []
    assert cont["os"].startswith("Debian GNU/Linux 12") and cont["python"].startswith("3.11")
    assert {"name": "numpy", "version": "1.24.2"} in cont["packages"]
    assert rec["started_at"].endswith("Z") and rec["duration_s"] > 0
    assert rec["logs"]["size"] > 0 and "epoch  30/30" in repro(
        "logs", rec["id"][:6], cwd=proj).stdout
    # show (by prefix) and runs give the same record
    shown = json.loads(repro("show", rec["id"][:8], "--json", cwd=proj).stdout)
    assert shown == rec
    listed = json.loads(repro("runs", "--json", cwd=proj).stdout)
    assert [x["id"] for x in listed] == [rec["id"]]
    human = repro("show", rec["id"][:8], cwd=proj)
    assert "succeeded" in human.stdout and rec["outputs"]["weights/w1.npy"]["sha256"] in \
        human.stdout


def test_same_spec_twice_gives_the_same_bits(proj):
    spec = proj / "specs" / "digits-mlp.yaml"
    a = launch_json(proj, spec, "--param", "epochs=3")[1]
    b = launch_json(proj, spec, "--param", "epochs=3")[1]
    assert a["spec_digest"] == b["spec_digest"] and a["id"] != b["id"]
    assert a["outputs"] == b["outputs"]
    c = launch_json(proj, spec, "--param", "epochs=4")[1]
    assert c["spec_digest"] != a["spec_digest"]
    assert c["outputs"]["weights/w1.npy"] != a["outputs"]["weights/w1.npy"]


def test_failing_job_is_recorded_failed_with_its_exit_code(proj):
    spec = add_spec(proj, "fails", """\
        command: [python3, -c, "import sys; print('going down', file=sys.stderr); sys.exit(7)"]
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 3  # JOB_FAILED, whatever the job's own code
    assert rec["status"] == "failed" and rec["exit_code"] == 7
    assert rec["reason"] == "the job exited with code 7"
    assert "going down" in rec["stderr_tail"]


def test_network_none_really_has_no_network(proj):
    probe = ("import errno, json, os, socket\n"
             "s = socket.socket()\n"
             "try:\n"
             "    s.connect(('192.0.2.1', 9)); err = 0\n"
             "except OSError as e:\n"
             "    err = e.errno\n"
             "routes = open('/proc/net/route').read().splitlines()[1:]\n"
             "json.dump({'ifaces': sorted(os.listdir('/sys/class/net')), 'routes': routes,\n"
             "           'errno': err}, open('/repro/outputs/net.json', 'w'))\n")
    spec = add_spec(proj, "offline", f"command: [python3, -c, {json.dumps(probe)}]\n")
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0, rec["stderr_tail"]
    store = open_store()
    net = json.loads(store.artifacts.local_path(rec["outputs"]["net.json"]["sha256"]).read_text())
    assert net == {"ifaces": ["lo"], "routes": [], "errno": 101}  # ENETUNREACH, no packet sent
    assert rec["hermetic"] is True and rec["resolved"]["network"] == "none"
    # asking for a network gives one (a route exists; nothing is contacted), and says so
    routes = "print(len(open('/proc/net/route').read().splitlines()) - 1)"
    spec = add_spec(proj, "online", f"command: [python3, -c, {json.dumps(routes)}]\n"
                    "network: bridge\n")
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0 and rec["hermetic"] is False
    assert int(repro("logs", rec["id"], cwd=proj).stdout.strip()) >= 1


def test_timeout_is_enforced_and_recorded(proj):
    spec = add_spec(proj, "sleeper", """\
        command: [python3, -c, "import time; print('sleeping', flush=True); time.sleep(60)"]
        timeout: 2s
        """)
    t0 = time.monotonic()
    p, rec = launch_json(proj, spec)
    assert time.monotonic() - t0 < 30
    assert p.returncode == 6 and rec["status"] == "timeout"
    assert rec["reason"].startswith("timed out after 2 s")


def test_memory_limit_kills_and_is_recorded_oom(proj):
    spec = add_spec(proj, "hog", """\
        command: [python3, -c, "x = bytearray(400 * 2**20); print(len(x))"]
        resources: {memory: 64m}
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 3 and rec["status"] == "failed"
    assert rec["reason"].startswith("oom-killed"), rec["reason"]


def test_package_lock_mismatch_fails_naming_the_package(proj):
    (proj / "images" / "wrong.lock").write_text("numpy==9.9.9\n")
    spec = add_spec(proj, "locked", """\
        command: [python3, /repro/code/hello.py]
        packages: {lock: ../images/wrong.lock}
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 3 and rec["status"] == "failed"
    assert rec["reason"] == ("package lock mismatch: numpy==9.9.9 is pinned but 1.24.2 is "
                             "installed")
    assert rec["outputs"] == {}  # the job itself never started


PROBE = ("import json, os\n"
         "st = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read()"
         ".splitlines() if ':\\t' in l)\n"
         "def can_write(p):\n"
         "    try:\n"
         "        open(p, 'w').close(); return True\n"
         "    except OSError:\n"
         "        return False\n"
         "json.dump({'uid': os.getuid(), 'cap_eff': st['CapEff'].strip(),\n"
         "  'no_new_privs': st['NoNewPrivs'].strip(),\n"
         "  'code': can_write('/repro/code/x'), 'input': can_write('/repro/inputs/d'),\n"
         "  'lib': can_write('/repro/lib/x'), 'run_json': os.path.exists('/repro/run.json'),\n"
         "  'threads': os.environ['OMP_NUM_THREADS'], 'hash_seed': "
         "os.environ['PYTHONHASHSEED'], 'hostname': __import__('socket').gethostname(),\n"
         "  'machine_id': open('/etc/machine-id').read().strip(),\n"
         "  'machine_id_writable': can_write('/etc/machine-id')},\n"
         "  open('/repro/outputs/probe.json', 'w'))\n")


def probe_spec(proj: Path) -> Path:
    """A job that writes what it can see and do (PROBE) to probe.json."""
    (proj / "data" / "tiny.txt").write_text("tiny\n")
    return add_spec(proj, "probe", f"""\
        command: [python3, -c, {json.dumps(PROBE)}]
        inputs: {{d: {{path: ../data/tiny.txt}}}}
        seed: 99
        resources: {{cpus: 2}}
        """)


PROBED = {"uid": 65534, "cap_eff": "0000000000000000", "no_new_privs": "1", "code": True,
          "input": False, "lib": False, "run_json": True, "threads": "2", "hash_seed": "99",
          "hostname": "repro", "machine_id_writable": False}


def test_container_is_unprivileged_inputs_read_only_and_code_a_writable_copy(proj):
    spec = probe_spec(proj)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0, rec["stderr_tail"]
    store = open_store()
    out = json.loads(store.artifacts.local_path(
        rec["outputs"]["probe.json"]["sha256"]).read_text())
    # the same hostname and machine-id in every run of the seed, as recorded
    machine_id = out.pop("machine_id")
    assert out == PROBED
    assert len(machine_id) == 32 and machine_id == rec["environment"]["container"][
        "machine_id"] and rec["environment"]["container"]["hostname"] == "repro"
    again = json.loads(repro("replay", rec["id"], "--json", cwd=proj, timeout=300).stdout)
    assert again["verdict"]["outputs"]["identical"] == ["probe.json", "x"]
    # what it wrote into its code folder is an output of the run; the store's unpacked
    # snapshot (mounted by no job) is as it was
    assert sorted(rec["outputs"]) == ["probe.json", "x"]
    snapshot = rec["resolved"]["code"]["snapshot"]
    assert not (store.code_cache / snapshot.split(":")[1] / "x").exists()


SECRET_JOB = """\
import json, os, sys, time
sys.path.insert(0, "/repro/lib")
import repro
value = open("/run/secrets/API_TOKEN").read()
print("token is", value, "| env has it:", "API_TOKEN" in os.environ, flush=True)
for line in value.splitlines():
    print("line:", line, flush=True)
repro.log_metric("loss-" + value.splitlines()[0], 1.0)
open(os.path.join("/repro/outputs", "key-" + value.splitlines()[0] + ".txt"), "w").write("x")
time.sleep(float(os.environ.get("PAUSE", "0")))
"""


def test_secret_reaches_the_job_as_a_file_but_never_the_store(proj, home, engine):
    """Secrets are files on a tmpfs (/run/secrets/NAME), not environment variables unless the
    spec asks; `docker inspect` never shows a value; every line of a multi-line secret and
    every name a job builds from one is redacted."""
    (proj / "examples" / "hello" / "secret_job.py").write_text(SECRET_JOB)
    spec = add_spec(proj, "secretive", """\
        command: [python3, /repro/code/secret_job.py]
        secrets: [API_TOKEN]
        env: {PAUSE: "4"}
        """)
    value = "s3cr3t-value-for-test-0042\nsecond-line-of-the-key-77\nthird-line-9"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                             str(spec.relative_to(proj)), "--json"], cwd=proj,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "API_TOKEN": value})
    run_id = wait_for_running(engine, home)
    inspect = subprocess.run(["docker", "inspect", engine.find({LABEL_RUN: run_id})[0].id],
                             capture_output=True, text=True)
    assert "/run/secrets/API_TOKEN" in inspect.stdout
    assert "s3cr3t" not in inspect.stdout and "second-line" not in inspect.stdout
    out, err = proc.communicate(timeout=120)
    rec = json.loads(out)
    assert proc.returncode == 0, err
    assert rec["resolved"]["secrets"] == ["API_TOKEN"] and rec["resolved"]["secret_env"] == []
    logs = repro("logs", rec["id"], cwd=proj).stdout
    assert "token is ***" in logs and "env has it: False" in logs
    assert logs.count("line: ***") == 3
    assert list(rec["metrics"]) == ["loss-***"] and list(rec["outputs"]) == ["key-***.txt"]
    assert any("secret's value in a name" in w for w in rec["warnings"])
    for line in value.splitlines():
        assert line not in out and line not in err
    assert not list(Path("/dev/shm").glob(f"repro-secrets-*/{rec['id']}"))  # removed after
    failing = add_spec(proj, "secret-fails", """\
        command: [python3, -c, "import os, sys; sys.exit('bad token ' + os.environ['API_TOKEN'])"]
        secrets: [{name: API_TOKEN, env: true}]
        """)
    p = repro("--debug", "launch", str(failing.relative_to(proj)), "--json", cwd=proj,
              env={"API_TOKEN": value})
    assert p.returncode == 3 and "bad token ***" in p.stdout
    for line in value.splitlines():
        assert line not in p.stdout and line not in p.stderr  # live output is redacted too
    p = repro("launch", str(failing.relative_to(proj)), cwd=proj, env={"API_TOKEN": "ab"})
    assert p.returncode == 2 and "secret API_TOKEN is 2 character(s)" in p.stderr
    bundle = home.parent / "secret-bundle"
    exported = repro("export", rec["id"], "--bundle", str(bundle), cwd=proj)
    assert exported.returncode == 0, exported.stderr
    for path in [*home.rglob("*"), *bundle.rglob("*")]:
        if path.is_file():
            for line in value.splitlines():
                assert line.encode() not in path.read_bytes(), path


def test_ctrl_c_stops_the_container_and_records_interrupted(proj, home, engine):
    spec = add_spec(proj, "long", """\
        command: [python3, -c, "import time; print('started', flush=True); time.sleep(120)"]
        """)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                             str(spec.relative_to(proj)), "--json"], cwd=proj,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    wait_for_running(engine, home)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rec = json.loads(out)
    assert rec["status"] == "interrupted" and "interrupted" in rec["reason"]
    assert engine.find({LABEL_RUN: rec["id"]}) == []


def test_bad_spec_is_one_line_exit_2_and_records_nothing(proj, home):
    bad = proj / "specs" / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nimage: {build: ../images/base}\n"
                   "command: [python3]\nresources: {cpus: -1}\n")
    p = repro("launch", "specs/bad.yaml", cwd=proj)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "specs/bad.yaml:5: resources.cpus: Input should be greater than 0" in p.stderr
    assert not (home / "repro.db").exists() or open_store(home).runs.count() == 0


def test_a_path_written_from_the_repository_root_is_refused_with_the_fix(proj, home):
    bad = proj / "specs" / "rooted.yaml"
    bad.write_text("version: 1\nname: rooted\nimage: {build: images/base}\n"
                   "command: [python3]\n")
    p = repro("launch", "specs/rooted.yaml", cwd=proj)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "specs/rooted.yaml:3: image.build:" in p.stderr
    assert "did you mean '../images/base'?" in p.stderr


def test_a_chatty_job_keeps_every_line_in_order(proj):
    # the engine sends each line as its own HTTP chunk and log frame; all must arrive
    spec = add_spec(proj, "chatty", """\
        command: [python3, -c, "import sys\\nfor i in range(50000): print('line', i)"]
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    logs = repro("logs", rec["id"], cwd=proj).stdout.splitlines()
    assert logs == [f"line {i}" for i in range(50000)]


def test_every_example_spec_runs(proj):
    for spec in sorted((proj / "specs").glob("*.yaml")):
        if spec.name == "digits-mlp.yaml":  # launched (and checked in depth) above
            continue
        p, rec = launch_json(proj, spec)
        assert p.returncode == 0 and rec["status"] == "succeeded", (spec.name, p.stderr)
        assert rec["outputs"], spec.name


def test_doctor_reports_a_ready_machine(proj):
    p = repro("doctor", "--json", cwd=proj)
    doc = json.loads(p.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["docker"]["ok"] and checks["store"]["ok"]
    assert checks["executor"]["ok"] and "docker engine" in checks["executor"]["detail"]
    assert checks["image base"]["ok"] and checks["image train"]["ok"]
    assert "none (" in checks["gpus"]["detail"] or checks["gpus"]["detail"]
    assert p.returncode == (0 if doc["ok"] else 5)


ARGPARSE_JOB = """\
import argparse, json, os
ap = argparse.ArgumentParser()
ap.add_argument("--lr", type=float)
ap.add_argument("--epochs", type=int)
args = ap.parse_args()
loss = 1.0
for epoch in range(args.epochs):
    loss *= 1 - args.lr
    print(f"epoch {epoch} train loss={loss:.6f} val loss: {loss * 1.1:.6f}", flush=True)
open("/repro/outputs/env.json", "w").write(json.dumps(
    {k: v for k, v in os.environ.items() if k.startswith(("REPRO_PARAM_", "LR_"))}))
"""


def test_an_argparse_script_that_prints_its_loss_needs_no_edits(proj):
    """args: flags passes every param as --name=value; metrics_from_log turns printed losses
    into metrics and a curve; {params.x} works in env; REPRO_PARAM_<NAME> is set."""
    (proj / "examples" / "hello" / "argparse_job.py").write_text(ARGPARSE_JOB)
    spec = add_spec(proj, "argparse", """\
        command: [python3, /repro/code/argparse_job.py]
        params: {lr: 0.5, epochs: 3}
        args: flags
        env: {LR_TEXT: "lr={params.lr}"}
        metrics_from_log:
          loss: 'train loss=(?P<value>[-0-9.eE+]+)'
          val loss: 'val loss: (?P<value>[-0-9.eE+]+)'
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    assert rec["resolved"]["command"][-2:] == ["--lr=0.5", "--epochs=3"]
    assert rec["metrics"] == {"loss": 0.125, "val loss": 0.1375}
    assert rec["series"]["loss"] == [[0, 0.5], [1, 0.25], [2, 0.125]]
    env = json.loads(open_store().artifacts.local_path(
        rec["outputs"]["env.json"]["sha256"]).read_text())
    assert env == {"REPRO_PARAM_LR": "0.5", "REPRO_PARAM_EPOCHS": "3", "LR_TEXT": "lr=0.5"}
    p = repro("runs", "--where", 'metrics."val loss" < 0.2', "--json", cwd=proj)
    assert [r["id"] for r in json.loads(p.stdout)] == [rec["id"]]


def test_lock_lines_for_other_platforms_are_skipped_and_recorded(proj):
    lock = proj / "data" / "marked.lock"  # beside the recipe, not in it: no rebuild
    lock.write_text((proj / "images" / "train" / "requirements.lock").read_text()
                    + 'colorama==0.4.6 ; sys_platform == "win32"\n')
    spec = add_spec(proj, "marked", """\
        image: {build: ../images/train}
        command: [python3, -c, "import numpy; open('/repro/outputs/n.txt', 'w').write('1')"]
        packages: {lock: ../data/marked.lock}
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    assert rec["environment"]["container"]["lock_skipped"] == [
        'colorama==0.4.6 ; sys_platform == "win32"']
    p = repro("image", "freeze", rec["resolved"]["image"]["digest"], cwd=proj)
    assert p.returncode == 0 and "numpy==1.24.2" in p.stdout.splitlines()


def test_whole_cpus_are_pinned_to_free_cores_and_the_job_counts_them(proj):
    spec = add_spec(proj, "cores", """\
        command: [python3, -c, "import os; print('cores', os.cpu_count(),
                  sorted(os.sched_getaffinity(0)))"]
        resources: {cpus: 1}
        seed: 0
        """)
    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    cpuset = run["environment"]["host"]["cpuset"]
    assert cpuset is not None and len(cpuset.split(",")) == 1
    assert f"cores 1 [{cpuset}]" in p.stderr  # os.cpu_count() agrees with the cpuset
    p, loose = launch_json(proj, spec, env={"REPRO_PIN_CPUS": "0"})
    assert p.returncode == 0 and loose["environment"]["host"]["cpuset"] is None
    half = add_spec(proj, "half", """\
        command: [python3, -c, "print('ok')"]
        resources: {cpus: 0.5}
        seed: 0
        """)
    p, run = launch_json(proj, half)
    assert p.returncode == 0 and run["environment"]["host"]["cpuset"] is None
