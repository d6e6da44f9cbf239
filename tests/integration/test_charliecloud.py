"""Charliecloud as the executor, for real (issue 26): `ch-run` from Debian's
charliecloud-runtime, images unpacked from the store's archive (no Docker used by the
Charliecloud side), the same records and verdicts as under Docker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from orchestrator.engine import LABEL_STORE
from orchestrator.engine.charliecloud import CharliecloudEngine
from tests.helpers import git, repro
from tests.integration.conftest import add_spec, launch_json
from tests.integration.test_replay import run_json

pytestmark = pytest.mark.archive  # the Charliecloud side runs only what the store archived

PROBE = textwrap.dedent('''\
    """What the job sees of its sandbox, written to probe.json."""
    import json
    import os
    import socket
    import sys

    def attempt(fn):
        try:
            fn()
            return "allowed"
        except OSError as e:  # Docker and Charliecloud may refuse with different errors
            return "unreachable" if e.errno == 101 else "refused"

    seen = {
        "uid": [os.getuid(), os.getgid()], "hostname": socket.gethostname(),
        "cwd": os.getcwd(), "machine_id": open("/etc/machine-id").read().strip(),
        "cores": len(os.sched_getaffinity(0)), "processes": len(
            [p for p in os.listdir("/proc") if p.isdigit()]),
        "network": attempt(lambda: socket.create_connection(("192.0.2.1", 9), timeout=3)),
        "write_input": attempt(lambda: open("/repro/inputs/d", "a").write("x")),
        "write_lib": attempt(lambda: open("/repro/lib/boot.sh", "a").write("x")),
        "write_image": attempt(lambda: open("/usr/bin/x", "w").write("x")),
        "write_tmp": attempt(lambda: open("/tmp/x", "w").write("x")),
        "secret": open("/run/secrets/TOKEN").read() if os.path.exists("/run/secrets/TOKEN")
        else None,
        "env": sorted(k for k in os.environ if k not in ("CH_RUNNING",)),
    }
    with open("probe.json", "w") as f:
        json.dump(seen, f, sort_keys=True)
    print(json.dumps(seen, sort_keys=True))
    ''')


def ch_env(tmp_path) -> dict[str, str]:
    return {"REPRO_ENGINE": "charliecloud", "REPRO_IMAGE_CACHE": str(tmp_path / "ch-cache")}


def probe_project(proj, name: str = "probe", extra: str = ""):
    code = proj / "examples" / "probe"
    code.mkdir(exist_ok=True)
    (code / "probe.py").write_text(PROBE)
    (proj / "data").mkdir(exist_ok=True)
    (proj / "data" / "d.txt").write_text("input bytes\n")
    git(proj, "add", "-A")
    return add_spec(proj, name, f"""\
        code: {{path: ../examples/probe}}
        command: [python3, probe.py]
        inputs: {{d: {{path: ../data/d.txt}}}}
        resources: {{cpus: 1}}
        seed: 0
        {extra}""")


@pytest.fixture
def leaves_no_job(home):
    yield
    left = CharliecloudEngine().find({LABEL_STORE: str(home.resolve())})
    assert left == [], "repro left Charliecloud jobs behind"


def test_a_docker_run_verifies_identical_under_charliecloud_and_the_reverse(
        proj, tmp_path, leaves_no_job):
    spec = probe_project(proj)
    p, docker_run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    env = ch_env(tmp_path)
    # Docker's run, replayed by ch-run from the store's archive: identical, the runtime named
    p, rep = run_json("verify", docker_run["id"], cwd=proj, env=env)
    assert p.returncode == 0 and rep["verdict"]["result"] == "identical", p.stderr
    assert "loading image" in p.stderr  # unpacked from the archive, not from any engine
    host = rep["environment"]["host"]
    assert host["engine"] == "charliecloud" and host["runtime"].startswith("charliecloud 0.")
    assert host["limits"]["memory"] == "cgroup v1 memory"  # this machine: root, cgroup v1
    assert host["limits"]["network"].startswith("a network namespace of its own")
    changes = {c["fact"]: c for c in rep["verdict"]["environment"]}
    assert changes["runtime"]["original"].startswith("docker ")
    assert changes["runtime"]["replay"].startswith("charliecloud ")
    # the sandbox the job saw, the same in both (probe.json is identical bit for bit)
    seen = json.loads(repro("cat", rep["id"], "probe.json", cwd=proj).stdout)
    assert seen["uid"] == [65534, 65534] and seen["hostname"] == "repro"
    assert seen["cwd"] == "/repro/code" and seen["cores"] == 1
    assert seen["processes"] < 10  # its own PID namespace
    assert seen["network"] == "unreachable"
    for where in ("write_input", "write_lib", "write_image"):
        assert seen[where] != "allowed", where
    assert seen["write_tmp"] == "allowed"
    # launched under Charliecloud (the recipe known to the store, its image from the
    # archive), verified under Docker
    p, ch_run = launch_json(proj, spec, env=env)
    assert p.returncode == 0 and ch_run["status"] == "succeeded", p.stderr
    assert ch_run["environment"]["host"]["engine"] == "charliecloud"
    p, rep = run_json("verify", ch_run["id"], cwd=proj)
    assert p.returncode == 0 and rep["verdict"]["result"] == "identical", p.stderr
    shown = repro("show", ch_run["id"], cwd=proj).stdout
    assert "Charliecloud 0." in shown and "memory cgroup v1 memory" in shown


def test_limits_timeouts_and_interrupts_hold_under_charliecloud(proj, home, tmp_path,
                                                                leaves_no_job):
    env = ch_env(tmp_path)
    hog = add_spec(proj, "hog", """\
        command: [python3, -c, "x = bytearray(400 * 2**20); print(len(x))"]
        resources: {memory: 64m}
        seed: 0
        """)
    p, run = launch_json(proj, hog)  # Docker first: archives the image into the store
    assert run["status"] == "failed", p.stderr
    p, run = launch_json(proj, hog, env=env)
    assert p.returncode == 3 and run["reason"].startswith("oom-killed"), (p.stderr, run)
    sleeper = add_spec(proj, "sleeper", """\
        command: [python3, -c, "import time; print('sleeping', flush=True); time.sleep(60)"]
        timeout: 2s
        seed: 0
        """)
    t0 = time.monotonic()
    p, run = launch_json(proj, sleeper, env=env)
    assert time.monotonic() - t0 < 30
    assert p.returncode == 6 and run["status"] == "timeout", p.stderr
    # Ctrl-C: the job is stopped, the run recorded interrupted, nothing left running
    forever = add_spec(proj, "forever", """\
        command: [python3, -c, "import time; print('up', flush=True); time.sleep(120)"]
        seed: 0
        """)
    launch = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                               str(forever.relative_to(proj)), "--json"], cwd=proj,
                              env={**os.environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not CharliecloudEngine().find({LABEL_STORE: str(home.resolve())}):
        assert time.monotonic() < deadline and launch.poll() is None, launch.communicate()
        time.sleep(0.2)
    time.sleep(1)
    launch.send_signal(signal.SIGINT)
    out, err = launch.communicate(timeout=60)
    assert json.loads(out)["status"] == "interrupted", err


def test_strict_refuses_and_secrets_reach_only_the_job(proj, tmp_path, leaves_no_job):
    env = ch_env(tmp_path)
    spec = probe_project(proj, "secretive", "secrets: [TOKEN]\n")
    p, run = launch_json(proj, spec, env={"TOKEN": "s3cr3t-value"})
    assert p.returncode == 0, p.stderr
    p, run = launch_json(proj, spec, env={**env, "TOKEN": "s3cr3t-value"})
    assert p.returncode == 0, p.stderr
    seen = json.loads(repro("cat", run["id"], "probe.json", cwd=proj).stdout)
    assert seen["secret"] == "s3cr3t-value"  # /run/secrets/TOKEN, as under Docker
    assert "s3cr3t-value" not in json.dumps(run)  # never recorded
    # without a cgroup to hold its memory (an ordinary user's machine), --strict refuses
    p = repro("launch", str(spec.relative_to(proj)), "--strict", cwd=proj,
              env={**env, "TOKEN": "s3cr3t-value", "REPRO_CH_LIMITS": "rlimit"})
    assert p.returncode != 0 and "cannot enforce" in p.stderr, p.stderr


def test_on_slurm_the_job_is_the_slurm_jobs_own_child_and_scancel_kills_it(
        proj, home, tmp_path, on_slurm):
    """Under Docker a Slurm job's container runs under dockerd, outside the job: a SIGKILL to
    the job leaves it running. Under Charliecloud it is the job's own process tree, so
    Slurm's kill reaches it; `repro gc` then finishes the record and removes what is left."""
    from tests.integration.test_slurm import SLOW, _wait_status

    spec = add_spec(proj, "slow", SLOW.replace("STEPS", "240"))
    hello = add_spec(proj, "hello-slurm", "command: [python3, /repro/code/hello.py]\nseed: 0\n")
    p, run = launch_json(proj, hello)  # Docker, here: the image archived into the store
    assert p.returncode == 0, p.stderr
    env = ch_env(tmp_path)  # every REPRO_* setting reaches the node
    p, run = launch_json(proj, hello, "--executor", "slurm", env=env, timeout=300)
    assert p.returncode == 0 and run["status"] == "succeeded", p.stderr
    assert run["environment"]["host"]["engine"] == "charliecloud"
    assert run["executor"]["kind"] == "slurm"
    # the cluster holds jobs by cgroups: Slurm's memory limit is the one that holds the job
    said = run["environment"]["host"]["limits"]["memory"]
    assert said.startswith("the Slurm job's cgroup (") and "MiB" in said, said
    hog = add_spec(proj, "hog-slurm", """\
        command: [python3, -c, "x = bytearray(900 * 2**20); print(len(x))"]
        resources: {memory: 64m}
        seed: 0
        """)
    p, run = launch_json(proj, hog, "--executor", "slurm", env=env, timeout=300)
    # told by the kernel's count in the Slurm cgroup, on the node (not Slurm's ending, read
    # only where the node recorded nothing)
    assert run["status"] == "failed", (p.stderr, run)
    assert run["reason"].startswith("oom-killed: the job exceeded the Slurm job's cgroup ("), \
        run["reason"]
    p, run = launch_json(proj, spec, "--executor", "slurm", "--detach", env=env)
    assert p.returncode == 0, p.stderr
    _wait_status(run["id"], "running", proj)
    engine = CharliecloudEngine()
    jobs = engine.find({"org.repro.run": run["id"]})
    assert len(jobs) == 1 and jobs[0].running
    from orchestrator.engine.charliecloud import JobState

    state = JobState.load(jobs[0].id)
    assert state is not None
    subprocess.run(["scancel", "--full", "--signal=KILL", run["executor"]["job_id"]],
                   check=True, env={**os.environ, **on_slurm})
    deadline = time.monotonic() + 30
    while state.alive():
        assert time.monotonic() < deadline, "Slurm's kill did not reach the Charliecloud job"
        time.sleep(0.2)
    p, rows = run_json("gc", "--json", cwd=proj, env=env)
    assert p.returncode == 0, p.stderr
    assert engine.find({"org.repro.run": run["id"]}) == []
    p, shown = run_json("wait", run["id"], cwd=proj, env=env, timeout=120)
    assert shown["status"] in ("interrupted", "lost"), shown


def test_a_run_exported_for_apptainer_holds_what_the_job_needs_and_the_exact_commands(
        proj, tmp_path):
    """Apptainer is not packaged here: the folder and its run.sh are checked, not run. The
    image.tar is checked for real: unpacked, it is exactly the recorded image."""
    from orchestrator.engine.unpacked import Unpacked

    spec = probe_project(proj, "secretive", "secrets: [TOKEN]\n")
    p, run = launch_json(proj, spec, env={"TOKEN": "s3cr3t-value"})
    assert p.returncode == 0, p.stderr
    dest = tmp_path / "for-apptainer"
    p, out = run_json("export", run["id"], "--apptainer", str(dest), cwd=proj)
    assert p.returncode == 0, p.stderr
    assert out["tested"] is False
    for path in ("repro/code/probe.py", "repro/inputs/d", "repro/lib/boot.sh",
                 "repro/run.json", "image.tar", "env", "machine-id", "run.sh"):
        assert (dest / path).exists(), path
    image = run["resolved"]["image"]["digest"]
    loaded = Unpacked(tmp_path / "check").load(chunks_of(dest / "image.tar"))
    assert loaded == [image]  # what `apptainer build docker-archive://` is given
    seed = subprocess.run(["sh", "-c", ". ./env; echo $PYTHONHASHSEED"], cwd=dest,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert seed == run["resolved"]["env"]["PYTHONHASHSEED"]
    script = (dest / "run.sh").read_text()
    assert subprocess.run(["sh", "-n", str(dest / "run.sh")]).returncode == 0
    assert "apptainer build image.sif docker-archive://image.tar" in script
    for flag in ("--containall", "--cleanenv", "--net --network none", "--hostname repro",
                 '--bind "$PWD"/repro:/repro:ro', '--bind "$PWD"/repro/code:/repro/code',
                 '--bind "$SECRETS":/run/secrets:ro', "image.sif",
                 "/bin/sh /repro/lib/boot.sh python3 probe.py"):
        assert flag in script, flag
    assert "UNTESTED" in script
    everything = b"".join(p.read_bytes() for p in dest.rglob("*") if p.is_file()
                          and p.name != "image.tar")
    assert b"s3cr3t-value" not in everything  # secrets come from the caller's environment
    p = repro("export", run["id"], "--apptainer", str(dest), cwd=proj)
    assert p.returncode == 2 and "not empty" in p.stderr


def chunks_of(path):
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _as_ordinary_user(folder) -> list[str]:
    """How to run repro as `nobody` with the system's own Python (Debian's, what a cluster
    user has; the suite's Python lives under /root, which nobody can read): the command's
    head, its whole environment included. The checkout and its virtual environment's packages
    must be readable by everyone (CI's clone in /tmp is)."""
    import sysconfig

    from tests.helpers import ROOT

    python = "/usr/bin/python3"
    packages = sysconfig.get_paths()["purelib"]
    for path in (ROOT / "orchestrator" / "__init__.py", packages):
        probe = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(path)],
                               capture_output=True)
        assert probe.returncode == 0, (
            f"{path} cannot be read by other users: run the tests from a checkout (and "
            "virtual environment) everyone may read, as CI's clone in /tmp is")
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == str(sys.version_info[:2]), (
        f"{python} is Python {version}; the suite's packages are built for "
        f"{sys.version_info[:2]}")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(folder), "USER": "nobody",
           "LANG": "C.UTF-8", "PYTHONPATH": f"{ROOT}:{packages}",
           "REPRO_HOME": str(folder / "store"), "REPRO_ENGINE": "charliecloud",
           "REPRO_IMAGE_CACHE": str(folder / "cache")}
    return ["runuser", "-u", "nobody", "--", "env", "-i",
            *[f"{k}={v}" for k, v in env.items()], python, "-m", "orchestrator"]


def test_an_ordinary_user_verifies_a_docker_run_under_charliecloud(proj, home, tmp_path):
    """No root, no daemon, the system's Python: `nobody`, given a copy of the store, replays
    a Docker run under Charliecloud from the store's archive, identical; the limits the
    record names are the ones an ordinary user has (a per-process rlimit, no CPU quota)."""
    import shutil
    import tempfile
    from pathlib import Path

    spec = probe_project(proj)
    p, docker_run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    folder = Path(tempfile.mkdtemp(prefix="repro-nonroot-"))  # tmp_path's parents: 0700
    try:
        shutil.copytree(home, folder / "store", symlinks=True)
        subprocess.run(["chown", "-R", "nobody:nogroup", str(folder)], check=True)
        head = _as_ordinary_user(folder)
        p = subprocess.run([*head, "verify", docker_run["id"], "--json"], cwd=folder,
                           capture_output=True, text=True, timeout=600)
        assert "Traceback" not in p.stderr, p.stderr
        assert p.returncode == 0, p.stderr
        rep = json.loads(p.stdout)
        assert rep["verdict"]["result"] == "identical", rep["verdict"]
        host = rep["environment"]["host"]
        assert host["engine"] == "charliecloud"
        assert host["limits"]["memory"].startswith("per-process data rlimit"), host["limits"]
        assert host["limits"]["cpu_quota"] == "not enforced"
        # what the job saw as nobody is what it saw in root's Docker container (probe.json
        # is among the outputs found identical); nothing of the job is left behind
        left = subprocess.run(["pgrep", "-u", "nobody", "-f", "ch-run"], capture_output=True)
        assert left.returncode == 1, left.stdout
        p = subprocess.run([*head, "doctor"], cwd=folder, capture_output=True, text=True)
        assert "limits: a per-process data rlimit only" in p.stdout, p.stdout
        assert "charliecloud installed; launches use charliecloud" in p.stdout, p.stdout
        # root's own store is not nobody's: one clear line, no traceback
        theirs = [a if not a.startswith("REPRO_HOME=") else f"REPRO_HOME={home}" for a in head]
        p = subprocess.run([*theirs, "runs"], cwd=folder, capture_output=True, text=True)
        assert p.returncode == 2 and p.stderr.startswith("error: permission denied: "), p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("name", ["hydra-sklearn", "nanogpt", "charlm-tensorboard",
                                  "ignored-data"])
def test_real_project_layouts_launched_under_docker_verify_identical_under_charliecloud(
        name, tmp_path, monkeypatch):
    """The corpus's layouts (Hydra's run folder, an in-repo package run with -m, a
    TensorBoard writer, a git-ignored data folder mounted as an input), unchanged: init and
    launch under Docker with the image archived, then verify under Charliecloud from the
    store alone, identical, only the runtime named as changed."""
    from tests.integration.test_projects import PROJECTS, clone, newcomer

    for key in list(os.environ):
        if key.startswith("REPRO_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("REPRO_ARCHIVE_IMAGES", "1")
    want = PROJECTS[name]
    root = clone(name, tmp_path / name)
    for script in want.get("prepare", []):
        subprocess.run([sys.executable, script], cwd=root, check=True, capture_output=True)
    p, _ = newcomer("init", cwd=root)
    assert p.returncode == 0, p.stderr
    p, run = newcomer("launch", cwd=root)
    assert p.returncode == 0 and run["status"] == "succeeded", p.stderr
    monkeypatch.setenv("REPRO_ENGINE", "charliecloud")
    monkeypatch.setenv("REPRO_IMAGE_CACHE", str(tmp_path / "ch-cache"))
    p, rec = newcomer("verify", run["id"], cwd=root)
    assert p.returncode == 0, p.stdout + p.stderr
    verdict = rec["verdict"]
    assert verdict["result"] == "identical", verdict
    assert sorted(verdict["outputs"]["identical"]) == sorted(want["outputs"])
    assert [c["fact"] for c in verdict["environment"]] == ["runtime"], verdict["environment"]
    assert rec["environment"]["host"]["engine"] == "charliecloud"
    assert CharliecloudEngine().find({LABEL_STORE: str((root / ".repro").resolve())}) == []
