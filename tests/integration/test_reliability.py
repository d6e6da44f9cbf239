"""Faults and hostile jobs, caused for real: each loses nothing, leaks nothing, and says so.
RELIABILITY.md lists each case with the test that proves it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestrator.engine import LABEL_RUN
from orchestrator.store import open_store
from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json, wait_for_running

pytestmark = pytest.mark.integration

SLEEPER = """\
command: [python3, -c, "import time; open('/repro/outputs/partial.txt', 'w').write('half');\
 print('started', flush=True); time.sleep(120)"]
"""


def start_launch(proj: Path, spec: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                             str(spec.relative_to(proj)), "--json"], cwd=proj,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_sigkill_of_repro_leaves_an_orphan_that_the_next_command_recovers(proj, home, engine):
    spec = add_spec(proj, "killed", SLEEPER)
    proc = start_launch(proj, spec)
    run_id = wait_for_running(engine, home)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert engine.find({LABEL_RUN: run_id}), "the container outlives repro"
    assert open_store(home).runs.get(run_id).status == "running"
    p = repro("runs", "--json", cwd=proj)  # any command that opens the store recovers
    assert p.returncode == 0 and f"recovered run {run_id}: lost" in p.stderr
    rec = open_store(home).runs.get(run_id)
    assert rec.status == "lost" and "died" in rec.reason
    assert engine.find({LABEL_RUN: run_id}) == []
    assert "started" in repro("logs", run_id, cwd=proj).stdout  # its logs so far are kept
    assert "partial.txt" in rec.outputs and "outputs are partial: the run was lost" in \
        rec.warnings
    assert not (home / "work" / run_id).exists()


def test_sigterm_stops_the_container_and_records_interrupted(proj, home, engine):
    spec = add_spec(proj, "termed", SLEEPER)
    proc = start_launch(proj, spec)
    run_id = wait_for_running(engine, home)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rec = json.loads(out)
    assert rec["id"] == run_id and rec["status"] == "interrupted"
    assert "partial.txt" in rec["outputs"]
    assert "outputs are partial: the run was interrupted" in rec["warnings"]
    assert engine.find({LABEL_RUN: run_id}) == []


class SocketProxy:
    """A unix-socket proxy in front of the Docker engine that can be cut mid-run."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        self.conns: list[socket.socket] = []
        self.is_cut = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.is_cut:  # closing a listening socket does not stop a blocked accept
                client.close()
                return
            self.connections += 1
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.is_cut = True
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        except OSError:
            pass
        self.server.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


def test_engine_lost_mid_run_ends_lost_never_running(proj, home, engine, tmp_path):
    spec = add_spec(proj, "unplugged", SLEEPER)
    proxy = SocketProxy(tmp_path / "docker.sock")
    proc = start_launch(proj, spec, env={"DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"})
    run_id = wait_for_running(engine, home)
    proxy.cut()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    rec = json.loads(out)
    assert rec["status"] == "lost" and str(tmp_path / "docker.sock") in rec["reason"]
    assert "Traceback" not in err
    # the container the engine still runs is found and removed by gc
    p = repro("gc", "--json", cwd=proj)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["stray_containers"]
    assert engine.find({LABEL_RUN: run_id}) == []


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                   check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_storing_outputs_fails_cleanly(proj, small_disk):
    env = {"REPRO_HOME": str(small_disk / "home")}
    spec = add_spec(proj, "filler", """\
        command: [python3, -c, "open('/repro/outputs/big.bin', 'wb').write(b'x' * 14_000_000)"]
        """)
    p = repro("launch", str(spec.relative_to(proj)), "--json", cwd=proj, env=env)
    assert p.returncode == 3, p.stderr
    rec = json.loads(p.stdout)
    assert rec["status"] == "failed" and "No space left on device" in rec["reason"]
    assert list((small_disk / "home" / "artifacts" / "tmp").iterdir()) == []  # no litter
    # the store stays consistent and usable
    hello = repro("launch", "specs/hello.yaml", "--json", cwd=proj, env=env)
    assert hello.returncode == 0, hello.stderr
    rows = json.loads(repro("runs", "--json", cwd=proj, env=env).stdout)
    assert [r["status"] for r in rows] == ["succeeded", "failed"]
    assert repro("fsck", cwd=proj, env=env).returncode == 0


def test_eight_launches_at_once_on_one_store(proj, home):
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                               "specs/hello.yaml", "--json", "-q"], cwd=proj,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    ids = {json.loads(out)["id"] for out, _ in results}
    store = open_store(home)
    assert len(ids) == 8 and store.runs.count() == 8
    assert all(r.status == "succeeded" for r in store.runs.recent(limit=None))


def test_corrupt_or_deleted_artifacts_are_named_by_fsck_replay_and_export(proj, home,
                                                                          tmp_path):
    _, rec = launch_json(proj, proj / "specs" / "digits-mlp.yaml", "--param", "epochs=2")
    assert repro("fsck", cwd=proj).returncode == 0
    store = open_store(home)
    w1 = store.artifacts.local_path(rec["outputs"]["weights/w1.npy"]["sha256"])
    w1.chmod(0o644)
    w1.write_bytes(b"tampered")
    p = repro("fsck", "--json", cwd=proj)
    assert p.returncode == 10
    problems = json.loads(p.stdout)["problems"]
    assert problems == [{"run": rec["id"], "name": "digits-mlp", "what": "output weights/w1.npy",
                         "sha256": rec["outputs"]["weights/w1.npy"]["sha256"],
                         "problem": "corrupt"}]
    data = store.artifacts.local_path(rec["resolved"]["inputs"]["digits"]["sha256"])
    data.chmod(0o644)
    data.write_bytes(data.read_bytes()[:-1] + b"\x00")
    p = repro("replay", rec["id"], cwd=proj)
    assert p.returncode == 9 and f"run {rec['id']}: input digits" in p.stderr
    assert "is corrupt in the store" in p.stderr
    snap = store.artifacts.local_path(rec["resolved"]["code"]["snapshot"])
    snap.chmod(0o644)
    snap.unlink()
    p = repro("export", rec["id"], "--bundle", str(tmp_path / "b"), cwd=proj)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 9 and last.startswith(f"error: run {rec['id']}: code ")
    p = repro("fsck", "--json", cwd=proj)
    whats = {x["what"]: x["problem"] for x in json.loads(p.stdout)["problems"]}
    assert whats == {"output weights/w1.npy": "corrupt", "input digits": "corrupt",
                     "code snapshot": "missing"}


def test_output_symlinks_are_not_followed_and_oversized_outputs_fail(proj):
    spec = add_spec(proj, "linker", """\
        command: [python3, -c, "import os; os.symlink('/etc/passwd', '/repro/outputs/pw');\
         os.symlink('/', '/repro/outputs/root'); open('/repro/outputs/ok.txt', 'w').write('ok')"]
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0 and list(rec["outputs"]) == ["ok.txt"]
    assert rec["skipped_outputs"] == {"pw": "symlink (not followed)",
                                      "root": "symlink (not followed)"}
    big = add_spec(proj, "oversized", """\
        command: [python3, -c, "open('/repro/outputs/big.bin', 'wb').write(b'x' * 5000)"]
        """)
    p = repro("launch", str(big.relative_to(proj)), "--json", cwd=proj,
              env={"REPRO_OUTPUT_LIMIT": "1k"})
    rec = json.loads(p.stdout)
    assert p.returncode == 3 and rec["status"] == "failed" and rec["outputs"] == {}
    assert rec["reason"].startswith("output big.bin is larger than the output limit")


ESCAPES = r"""
import ctypes, json, os, socket
tried = {}
def attempt(name, fn):
    try:
        fn()
        tried[name] = "succeeded"
    except Exception as e:
        tried[name] = type(e).__name__
libc = ctypes.CDLL(None, use_errno=True)
def check(rc):
    if rc != 0:
        raise OSError(ctypes.get_errno(), "failed")
attempt("setuid-root", lambda: os.setuid(0))
attempt("write-etc", lambda: open("/etc/repro-escape", "w").write("x"))
attempt("write-lib", lambda: open("/repro/lib/escape", "w").write("x"))
attempt("write-input", lambda: open("/repro/inputs/d", "a").write("x"))
attempt("mount-tmpfs", lambda: check(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
attempt("raw-socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))
attempt("docker-socket", lambda: socket.socket(socket.AF_UNIX).connect("/var/run/docker.sock"))
attempt("chroot", lambda: os.chroot("/tmp"))
attempt("mknod", lambda: os.mknod("/tmp/dev", 0o600 | 0o020000, os.makedev(1, 3)))
attempt("chown-root-file", lambda: os.chown("/repro/outputs", 0, 0))
attempt("network", lambda: socket.create_connection(("192.0.2.1", 80), timeout=2))
mounts = [line.split()[1] for line in open("/proc/mounts")]
json.dump({"tried": tried, "repro_mounts": sorted(m for m in mounts if m.startswith("/repro"))},
          open("/repro/outputs/escapes.json", "w"))
"""


def test_a_hostile_job_cannot_escape(proj):
    (proj / "data" / "d.txt").write_text("input\n")
    spec = add_spec(proj, "hostile", f"""\
        command: [python3, -c, {json.dumps(ESCAPES)}]
        inputs: {{d: {{path: ../data/d.txt}}}}
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0, rec["stderr_tail"]
    out = json.loads(open_store().artifacts.local_path(
        rec["outputs"]["escapes.json"]["sha256"]).read_text())
    assert all(v != "succeeded" for v in out["tried"].values()), out["tried"]
    assert len(out["tried"]) == 11
    # no host path is mounted beyond those the spec names
    assert out["repro_mounts"] == ["/repro/code", "/repro/inputs/d", "/repro/lib",
                                   "/repro/meta", "/repro/outputs", "/repro/run.json"]
