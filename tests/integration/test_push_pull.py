"""`repro push` and `repro pull` between a private store and a team's (a real PostgreSQL
server, a shared folder or a real registry): idempotent, resumable after a kill -9,
hash-verified, and clear about what the other side lacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json
from tests.integration.test_replay import run_json, serve_registry


def _team(pg_server, db: str, artifacts: str) -> dict[str, str]:
    pg_server.create_db(db)
    return {"REPRO_TEAM_STORE": pg_server.url(db=db), "REPRO_TEAM_ARTIFACTS": artifacts}


def test_push_copies_a_run_once_and_a_teammate_verifies_it_then_pulls_it(
        proj, home, pg_server, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    team = _team(pg_server, "pushes", f"file://{shared}")
    spec = add_spec(proj, "hello-push", "command: [python3, /repro/code/hello.py]\nseed: 2\n")
    p, run = launch_json(proj, spec, env={"REPRO_USER": "alice"})  # alice's own store
    assert p.returncode == 0, p.stderr
    repro("tag", run["id"], "stage=candidate", cwd=proj)
    repro("note", run["id"], "lr from the sweep", cwd=proj)
    assert repro("diagnose", run["id"], "--replays", "1", "-q", cwd=proj).returncode == 0

    p = repro("push", run["id"][:8], cwd=proj)  # no team configured: one line, what to set
    assert p.returncode == 2 and "REPRO_TEAM_STORE" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1

    p, first = run_json("push", run["id"][:8], cwd=proj, env=team)
    assert p.returncode == 0, p.stderr
    [moved] = first["runs"]
    assert moved["state"] == "copied" and moved["artifacts"] >= 3 and moved["tags"] == 1
    assert moved["notes"] == 1 and moved["diagnoses"] == 1
    p, again = run_json("push", run["id"], cwd=proj, env=team)
    assert p.returncode == 0, p.stderr
    assert again["runs"] == [{**moved, "state": "present", "artifacts": 0, "bytes": 0,
                              "tags": 0, "notes": 0, "diagnoses": 0}]

    # bob: nothing but the two URLs and an empty home
    bob = {"REPRO_HOME": str(tmp_path / "bob"), "REPRO_STORE": team["REPRO_TEAM_STORE"],
           "REPRO_ARTIFACTS": team["REPRO_TEAM_ARTIFACTS"], "REPRO_USER": "bob"}
    p, shown = run_json("show", run["id"], cwd=tmp_path, env=bob)
    assert shown["id"] == run["id"]
    assert shown["tags"] == {"stage": "candidate"} and shown["user"] == "alice"
    assert [d["result"] for d in shown["diagnoses"]] == ["reproduces"]
    # bob shares this machine's engine, and images are not archived in these tests: his
    # grant says he runs alice's run in the engine's copy of its image (issue 21, M8)
    p = repro("verify", run["id"], "--local-image", cwd=tmp_path, env=bob, timeout=600)
    assert p.returncode == 0 and "IDENTICAL" in p.stdout + p.stderr, p.stdout + p.stderr

    # carol pulls the run and bob's verdict for offline work: her own store, no team URLs set
    carol = {"REPRO_HOME": str(tmp_path / "carol"), **team}
    p, pulled = run_json("pull", "--where", "name = hello-push", cwd=tmp_path, env=carol)
    assert p.returncode == 0, p.stderr
    assert [r["state"] for r in pulled["runs"]] == ["copied", "copied"]  # run, then replay
    offline = {"REPRO_HOME": str(tmp_path / "carol")}
    p, rows = run_json("runs", cwd=tmp_path, env=offline)
    assert sorted(r["user"] for r in rows) == ["alice", "bob"]
    p = repro("fsck", cwd=tmp_path, env=offline)
    assert p.returncode == 0, p.stdout + p.stderr
    p, shown = run_json("show", run["id"], cwd=tmp_path, env=offline)
    assert [r["verdict"] for r in shown["replays"]] == ["identical"]
    assert shown["notes"][0]["text"] == "lr from the sweep"

    # what the team store lacks is named: a blob gone from the shared folder
    snapshot = run["resolved"]["code"]["snapshot"].split(":", 1)[1]
    (shared / snapshot[:2] / snapshot[2:]).unlink()
    dave = {"REPRO_HOME": str(tmp_path / "dave"), **team}
    p = repro("pull", run["id"], cwd=tmp_path, env=dave)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "the team store" in p.stderr and "lacks the code snapshot" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p, rows = run_json("runs", cwd=tmp_path, env={"REPRO_HOME": str(tmp_path / "dave")})
    assert rows == []  # no record that points at nothing

    # a member rewrites an output in the shared folder: the kernel's copy of it is hashed
    # before it lands, so the pull refuses it and leaves nothing behind
    out = run["outputs"]["hello.txt"]["sha256"]
    blob = shared / out[:2] / out[2:]
    blob.chmod(0o644)
    blob.write_bytes(b"not what alice wrote\n")
    erin = tmp_path / "erin"
    p = repro("pull", run["id"], cwd=tmp_path, env={"REPRO_HOME": str(erin), **team})
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "corrupt" in p.stderr and out[:16] in p.stderr, p.stderr
    assert not (erin / "artifacts" / out[:2] / out[2:]).exists()
    assert list((erin / "artifacts" / "tmp").glob("*")) == []


def test_a_push_killed_mid_transfer_completes_when_run_again(proj, home, pg_server, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    team = _team(pg_server, "resumes", str(shared))
    spec = add_spec(proj, "big-output", """\
        command: [python3, -c, "open('/repro/outputs/big.bin', 'wb').write(b'x' * (600 << 20))"]
        resources: {memory: 2g}
        """)
    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "push", run["id"]],
                            cwd=proj, env={**os.environ, **team}, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # announced before the big copy starts
    assert "push output big.bin" in line, line
    os.killpg(proc.pid, signal.SIGKILL)  # at once: the copy (hashed beside its writes) is fast
    proc.wait()
    p, rows = run_json("runs", cwd=tmp_path, env={"REPRO_HOME": str(tmp_path / "x"),
                                                  "REPRO_STORE": team["REPRO_TEAM_STORE"]})
    assert rows == []  # killed before the record: the team store has no half a run
    p, done = run_json("push", run["id"], cwd=proj, env=team)
    assert p.returncode == 0, p.stderr
    assert done["runs"][0]["state"] == "copied"
    big = run["outputs"]["big.bin"]["sha256"]
    assert (shared / big[:2] / big[2:]).stat().st_size == 600 << 20
    bob = {"REPRO_HOME": str(tmp_path / "bob"), "REPRO_STORE": team["REPRO_TEAM_STORE"],
           "REPRO_ARTIFACTS": str(shared)}
    p = repro("fsck", cwd=tmp_path, env=bob)
    assert p.returncode == 0, p.stdout + p.stderr
    p = repro("gc", cwd=tmp_path, env=bob)  # the killed copy's temp file: its process is gone
    assert p.returncode == 0 and not list(shared.glob("tmp/*")), p.stdout + p.stderr


def test_push_to_a_registry_sends_the_image_by_digest(proj, home, pg_server, tmp_path):
    (tmp_path / "reg").mkdir()
    with serve_registry(tmp_path / "reg") as registry:
        team = _team(pg_server, "images", f"oci://{registry}/team/runs")
        spec = add_spec(proj, "hello-reg", "command: [python3, /repro/code/hello.py]\n")
        p, run = launch_json(proj, spec)
        assert p.returncode == 0, p.stderr
        p, done = run_json("push", run["id"], cwd=proj, env=team, timeout=600)
        assert p.returncode == 0, p.stderr
        ref = done["runs"][0]["image"]
        assert ref.startswith(f"{registry}/team/runs@sha256:")
        base = f"http://{registry}/v2/team/runs"
        tags = set(json.load(urllib.request.urlopen(f"{base}/tags/list"))["tags"])
        image = run["resolved"]["image"]["digest"].split(":", 1)[1]
        assert tags == {run["id"], f"image-{image[:12]}"}
        req = urllib.request.Request(f"{base}/manifests/{ref.split('@')[1]}", method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution"
                                              ".manifest.v2+json"})
        assert urllib.request.urlopen(req).status == 200
        # the repository digest is in the team's store, for replays anywhere to pull by
        bob = {"REPRO_HOME": str(tmp_path / "bob"), "REPRO_STORE": team["REPRO_TEAM_STORE"],
               "REPRO_ARTIFACTS": team["REPRO_TEAM_ARTIFACTS"]}
        p, card = run_json("show", run["id"], cwd=tmp_path, env=bob)
        assert ref in card["image_pushes"]
        p, again = run_json("push", run["id"], cwd=proj, env=team)
        assert again["runs"][0]["state"] == "present" and again["runs"][0]["image"] == ref
        # another team database on the same registry: the image there is found by its
        # manifest's config (the image id), not pushed again
        other = {**team, "REPRO_TEAM_STORE": _team(pg_server, "images2", "")[
            "REPRO_TEAM_STORE"]}
        p, fresh = run_json("push", run["id"], cwd=proj, env=other)
        assert fresh["runs"][0]["state"] == "copied" and fresh["runs"][0]["image"] == ref
        assert "Pushed" not in p.stderr and "Layer already exists" not in p.stderr


def test_a_fresh_machine_pulls_the_image_by_digest_from_the_team_registry(
        proj, home, pg_server, images, tmp_path):
    """Verify anywhere: an image only this machine had (built here, never archived) reaches
    a teammate through the team's registry, by digest, and the replay is identical."""
    import uuid

    marker = uuid.uuid4().hex[:12]
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text(
        f"FROM {images['base']}\nLABEL org.repro.test={marker}\n")
    tag = f"repro-test/pushpull:{marker}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp_path / "img")], check=True,
                   capture_output=True)
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], check=True,
                              capture_output=True, text=True).stdout.strip()
    try:
        (tmp_path / "reg").mkdir()
        with serve_registry(tmp_path / "reg") as registry:
            team = _team(pg_server, "fresh", f"oci://{registry}/team/runs")
            spec = add_spec(proj, "own-image", f"image: {{ref: '{tag}'}}\n"
                            "command: [python3, /repro/code/hello.py]\n")
            p, run = launch_json(proj, spec, env={"REPRO_ARCHIVE_IMAGES": "0"})
            assert p.returncode == 0, p.stderr
            assert run["resolved"]["image"]["digest"] == image_id
            p, done = run_json("push", run["id"], cwd=proj, env=team, timeout=600)
            assert p.returncode == 0 and done["runs"][0]["image"], p.stderr
            subprocess.run(["docker", "rmi", "-f", image_id], check=True, capture_output=True)
            bob = {"REPRO_HOME": str(tmp_path / "bob"),
                   "REPRO_STORE": team["REPRO_TEAM_STORE"],
                   "REPRO_ARTIFACTS": team["REPRO_TEAM_ARTIFACTS"]}
            p = repro("verify", run["id"], cwd=tmp_path, env=bob, timeout=600)
            assert p.returncode == 0, p.stdout + p.stderr
            assert f"pulling {done['runs'][0]['image']}" in p.stderr
            assert "IDENTICAL" in p.stdout + p.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", image_id], capture_output=True)
