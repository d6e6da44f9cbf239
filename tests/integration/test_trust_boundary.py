"""The trust boundary through the real engine: a hostile job and a hostile bundle, tried as
an attacker would (issue 9's findings H2, H3, H4, M6, M7). Unit-level checks of every manifest
field are in tests/unit/test_trust_boundary.py."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.engine import LABEL_STORE, Engine
from orchestrator.store import open_store
from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json, wait_for_running
from tests.integration.test_replay import run_json, unique_image_project

pytestmark = pytest.mark.integration

HOSTILE_JOB = """\
import json, os, subprocess, sys, time
meta, out = "/repro/meta", "/repro/outputs"
os.mkfifo(f"{meta}/metrics.jsonl")                    # a reader would block forever
os.symlink("/dev/zero", f"{meta}/params.jsonl")        # a reader would never stop
json.dump([], open(f"{meta}/env.json", "w"))           # not the mapping the boot wrote
open(f"{out}/metrics.json", "w").write("[" * 20000 + "]" * 20000)
open(f"{out}/line\\nbreak.txt", "w").write("x")
with open(f"{out}/sparse.bin", "wb") as f:             # 1 GiB that costs nothing here
    f.truncate(1 << 30)
d = out
for _ in range(80):
    d += "/d"
os.makedirs(d)
try:                                                   # /tmp is a tmpfs of REPRO_TMP_SIZE
    with open("/tmp/fill", "wb") as f:
        f.write(b"x" * (64 << 20))
    tmp = "wrote 64 MiB"
except OSError as e:
    tmp = e.strerror
open(f"{out}/tmp.txt", "w").write(tmp)
print("hostile files written", flush=True)
time.sleep(float(os.environ.get("PAUSE", "0")))
"""


def hostile_spec(proj: Path, pause: int = 0) -> Path:
    (proj / "examples" / "hello" / "hostile.py").write_text(HOSTILE_JOB)
    return add_spec(proj, f"hostile{pause}", f"""\
        command: [python3, /repro/code/hostile.py]
        env: {{PAUSE: "{pause}"}}
        resources: {{memory: 256m}}
        """)


LIMITS = {"REPRO_RUN_OUTPUT_LIMIT": "64m", "REPRO_TMP_SIZE": "16m"}


def test_a_hostile_job_neither_hangs_nor_bricks_the_store(proj, home):
    """H4: a FIFO, /dev/zero behind a name, a malformed env.json and a 20,000-deep JSON once
    hung launch and broke every later command. M7: a sparse 1 GiB file, an unbounded /tmp.
    Low: a file name with a newline was silently dropped."""
    spec = hostile_spec(proj)
    p, rec = launch_json(proj, spec, env=LIMITS, timeout=180)
    assert p.returncode == 3, p.stderr
    assert rec["status"] == "failed" and "total limit (67108864 bytes)" in rec["reason"]
    warnings = " | ".join(rec["warnings"])
    for expected in ("metrics.jsonl is not a regular file", "params.jsonl is a symbolic link",
                     "metrics.json is nested too deeply", "sparse.bin is sparse"):
        assert expected in warnings
    container = rec["environment"]["container"]  # its env.json was never read (M6)
    assert container["captured"] == "image" and container["python"]
    skipped = rec["skipped_outputs"]
    assert skipped["line\\x0abreak.txt"] == "the name contains control characters"
    assert "over the run's total output limit" in skipped["sparse.bin"]
    assert any("deeper than 64" in why for why in skipped.values())
    tmp_result = repro("logs", rec["id"], cwd=proj)
    assert tmp_result.returncode == 0 and "hostile files written" in tmp_result.stdout
    from orchestrator.store import open_store

    stored = open_store().artifacts.local_path(rec["outputs"]["tmp.txt"]["sha256"]).read_text()
    assert stored == "No space left on device"  # the job's /tmp is a 16 MiB tmpfs
    for command in (["runs"], ["show", rec["id"]], ["fsck"]):
        p = repro(*command, cwd=proj, timeout=60)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (command, p.stderr)


def test_orphan_recovery_survives_the_hostile_files_too(proj, home, engine):
    """H4 again: recovery re-read the same files in every later command; the run must end
    (lost) and the command must work."""
    spec = hostile_spec(proj, pause=60)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                             str(spec.relative_to(proj)), "--json"], cwd=proj,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **LIMITS})
    run_id = wait_for_running(engine, home)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    p = repro("runs", "--json", cwd=proj, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    p, rec = run_json("show", run_id, cwd=proj)
    assert rec["status"] == "lost" and "died" in rec["reason"]
    assert any("env.json is malformed" in w for w in rec["warnings"])


def _unique_image_spec(proj: Path) -> Path:
    """The run writes which HOSTILE_* variables it saw (none, unless a secret is granted)."""
    (proj / "examples" / "hello" / "seen.py").write_text(
        "import os\nseen = sorted(k for k in os.environ if k.startswith('HOSTILE'))\n"
        "open('/repro/outputs/seen.txt', 'w').write(str(seen))\n")
    return unique_image_project(proj, "seen.py")


def _put(bundle: Path, data: bytes) -> tuple[str, int]:
    sha = hashlib.sha256(data).hexdigest()
    (bundle / "artifacts" / sha).write_bytes(data)
    return sha, len(data)


def _poison(bundle: Path, victim_tag: str) -> None:
    """What an attacker edits in a bundle: privileges in the record, and tags in the image
    archive (its manifest.json names the image as the victim's recipe)."""
    doc = json.loads((bundle / "manifest.json").read_text())
    r = doc["record"]["resolved"]
    r["network"] = "bridge"
    r["secrets"] = ["HOSTILE_SECRET"]
    r["secret_env"] = ["HOSTILE_SECRET"]
    r["resources"]["cpus"] = 64.0
    r["timeout_s"] = None
    old = next(h for h, m in doc["artifacts"].items() if m["role"] == "image")
    index = json.loads((bundle / "artifacts" / old).read_text())
    member = next(m for m in index["members"] if m["name"] == "manifest.json")
    entries = json.loads((bundle / "artifacts" / member["sha256"]).read_bytes())
    for e in entries:
        e["RepoTags"] = [victim_tag]
    member["sha256"], member["size"] = _put(bundle, json.dumps(entries).encode())
    doc["artifacts"][member["sha256"]] = {"role": "image-layer:manifest.json",
                                          "size": member["size"], "bundled": True}
    new, size = _put(bundle, json.dumps(index, sort_keys=True).encode())
    doc["artifacts"][new] = {**doc["artifacts"].pop(old), "size": size}
    r["image"]["archive"] = new
    (bundle / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.archive
def test_a_hostile_bundle_picks_neither_privileges_nor_image_tags(proj, home, tmp_path,
                                                                 engine: Engine):
    """H2: network, secrets and limits from a bundle were obeyed (verify still exited 0).
    H3: tags inside a bundle's image archive were applied, so the victim's next launch of a
    recipe ran the attacker's image. M6: a verified bundle left fsck red (no outputs, logs)."""
    spec = _unique_image_spec(proj)
    p, orig = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    image = orig["resolved"]["image"]["digest"]
    bundle = tmp_path / "bundle"
    p, _ = run_json("export", orig["id"], "--bundle", str(bundle), cwd=proj)
    assert p.returncode == 0, p.stderr
    victim = f"repro/victim-{uuid.uuid4().hex[:8]}:latest"
    _poison(bundle, victim)
    engine.remove_image(image)
    fresh = {"REPRO_HOME": str(tmp_path / "ci-home"), "HOSTILE_SECRET": "do-not-pass-me"}
    try:
        p, rec = run_json("verify", str(bundle), cwd=tmp_path, env=fresh)
        assert p.returncode == 0, p.stderr
        asks = p.stderr[p.stderr.index("it asks for:"):]
        assert "network: bridge" in asks and "secrets: HOSTILE_SECRET" in asks
        assert "64 CPUs" in asks and "timeout none" in asks
        r = rec["resolved"]
        assert r["network"] == "none" and rec["hermetic"] and r["secrets"] == []
        assert r["resources"]["cpus"] == float(os.cpu_count()) and r["timeout_s"] >= 600
        notes = " | ".join(rec["warnings"])
        assert "--allow-network" in notes and "--secret NAME" in notes
        seen = repro("logs", rec["id"], cwd=tmp_path, env=fresh)
        assert seen.returncode == 0
        assert rec["verdict"]["result"] == "identical"  # seen.txt: no HOSTILE_* in the env
        assert engine.image(victim) is None  # the archive's tag was never applied
        assert engine.image(image)["tags"] == [f"repro-loaded:{image[7:19]}"]
        p, doc = run_json("fsck", cwd=tmp_path, env=fresh)
        assert p.returncode == 0 and doc["ok"], doc
        p, granted = run_json("verify", str(bundle), "--allow-network", "--secret",
                              "HOSTILE_SECRET", "--timeout", "5m", cwd=tmp_path, env=fresh)
        assert granted["resolved"]["network"] == "bridge" and not granted["hermetic"]
        assert granted["resolved"]["secrets"] == ["HOSTILE_SECRET"]
        assert granted["verdict"]["result"] == "differs"  # it did see HOSTILE_SECRET now
        assert granted["verdict"]["outputs"]["differ"][0]["path"] == "seen.txt"
    finally:
        engine.remove_image(image)


def _crafted_snapshot(outside: Path) -> bytes:
    """A code snapshot an attacker builds: a member written through a link planted by an
    earlier member (the pattern of the CVE-2025-4517 family), then a link out of the folder
    (each refused on its own in tests/unit/test_archives.py)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
                data: bytes = b"") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("hello.py", data=b"print('hello')\n")
        add("sub", tarfile.DIRTYPE)
        add("d", tarfile.SYMTYPE, "sub")  # a link inside, harmless by itself
        add("d/pwned", data=b"written through a link")  # ...then a member through it
        add("out", tarfile.SYMTYPE, "../" * 12 + str(outside).lstrip("/"))
        add("out/pwned", data=b"written outside")
    return buf.getvalue()


def test_a_crafted_snapshot_in_a_bundle_writes_nothing_outside_the_store(proj, home, tmp_path):
    """Issue 21, C1: a bundle whose code snapshot is a crafted tar, verified in a store that
    never saw it. Refused by the member-checked extractor (exit 9); nothing lands outside."""
    spec = add_spec(proj, "hello-c1", "command: [python3, /repro/code/hello.py]\nseed: 1\n")
    p, orig = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    bundle = tmp_path / "bundle"
    p, _ = run_json("export", orig["id"], "--bundle", str(bundle), cwd=proj)
    assert p.returncode == 0, p.stderr
    outside = tmp_path / "outside"
    outside.mkdir()
    doc = json.loads((bundle / "manifest.json").read_text())
    old = doc["record"]["resolved"]["code"]["snapshot"].split(":")[1]
    new, size = _put(bundle, _crafted_snapshot(outside))
    doc["artifacts"][new] = {**doc["artifacts"].pop(old), "size": size}
    doc["record"]["resolved"]["code"]["snapshot"] = f"sha256:{new}"
    (bundle / "manifest.json").write_text(json.dumps(doc))
    fresh = {"REPRO_HOME": str(tmp_path / "ci-home")}
    before = sorted(p.name for p in tmp_path.iterdir())
    p, err = run_json("verify", str(bundle), cwd=tmp_path, env=fresh)
    assert p.returncode == 9, p.stdout + p.stderr
    assert f"code snapshot sha256:{new[:12]}" in err["error"]["message"]
    assert "needs 'd' to be a folder, but the archive made it a link" in err["error"]["message"]
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*before, "ci-home"})
    cache = tmp_path / "ci-home" / "cache" / "code"
    assert not cache.exists() or list(cache.iterdir()) == []  # the half-unpacked copy: gone


def test_a_secret_a_job_writes_into_a_differing_text_output_is_redacted_in_the_verdict(
        proj, home):
    """Issue 21, M5: a verdict quotes the first differing line of a text output; a job that
    wrote its secret there put the value into the stored record. The replay's secrets are
    redacted out of the verdict, as out of logs."""
    (proj / "examples" / "hello" / "stamp.py").write_text(
        "import time\nsecret = open('/run/secrets/API_TOKEN').read()\n"
        "open('/repro/outputs/stamp.txt', 'w').write(f'at {time.time_ns()} key {secret}\\n')\n")
    spec = add_spec(proj, "stamp", "command: [python3, /repro/code/stamp.py]\n"
                    "secrets: [API_TOKEN]\nseed: 1\n")
    token = {"API_TOKEN": "tok-" + uuid.uuid4().hex}
    p, run = launch_json(proj, spec, env=token)
    assert p.returncode == 0, p.stderr
    p, rec = run_json("verify", run["id"], cwd=proj, env=token)
    assert p.returncode == 8, p.stdout + p.stderr
    differ = rec["verdict"]["outputs"]["differ"][0]
    assert differ["path"] == "stamp.txt" and differ["content"]["first_line"] == 1
    assert differ["content"]["replay"].endswith("key ***")
    p, shown = run_json("show", rec["id"], cwd=proj)
    assert token["API_TOKEN"] not in json.dumps(shown)


PLANT = """\
import os, sys
for path in sys.argv[1:]:
    try:
        if path.endswith("/"):
            os.listdir(path)
        else:
            with open(path, "a") as f:
                f.write('{"name": "loss", "value": -1, "step": 0}\\n')
        print("reached", path)
    except OSError as e:
        print(type(e).__name__, path)
"""


def test_another_local_user_reaches_no_folder_of_a_running_job(proj, engine, tmp_path,
                                                                monkeypatch):
    """Issue 21, M7: the work folders were 0777 under a world-readable store, so another
    local user planted outputs and metrics into a running job. The store (an old one made
    with a permissive umask too) keeps its work folders private: only this user, and the
    engine that mounts them, reach them."""
    old = Path(f"/var/tmp/repro-m7-{uuid.uuid4().hex[:8]}")
    try:
        (old / "work").mkdir(parents=True)
        os.chmod(old, 0o755)
        os.chmod(old / "work", 0o777)  # as a permissive umask, or an older repro, left it
        monkeypatch.setenv("REPRO_HOME", str(old))
        spec = add_spec(proj, "private", """\
            command: [python3, -c, "import time; print('started', flush=True); time.sleep(8)"]
            """)
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                                 str(spec.relative_to(proj)), "--json"], cwd=proj,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        run_id = wait_for_running(engine, old)
        work = old / "work" / run_id
        targets = [f"{old / 'work'}/", f"{work}/", str(work / "code" / "planted.txt"),
                   str(work / "meta" / "metrics.jsonl")]
        assert os.getuid() == 0, "the attack needs a second local user: run the tests as root"
        attacker = subprocess.run(["/usr/bin/python3", "-I", "-c", PLANT, *targets],
                                  user=4242, group=4242, capture_output=True, text=True,
                                  timeout=30)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert attacker.stdout.splitlines() == [f"PermissionError {t}" for t in targets], \
            attacker.stdout + attacker.stderr
        rec = json.loads(out)
        assert "planted.txt" not in rec["outputs"] and "loss" not in rec.get("metrics", {})
        assert (old / "work").stat().st_mode & 0o777 == 0o700
        fresh = tmp_path / "fresh" / "store"  # a store repro makes is private from the start
        open_store(fresh).close()
        assert fresh.stat().st_mode & 0o777 == 0o700
    finally:
        for job in engine.find({LABEL_STORE: str(old.resolve())}):
            engine.cleanup(job.id)
        subprocess.run(["rm", "-rf", str(old)], check=False)


FORGER = """\
import json
json.dump({"os": "Forged OS 99", "os_release": {"ID": "forged"}, "python": "9.9.9",
           "packages": [{"name": "numpy", "version": "0.0.1-forged"}], "lock_problems": [],
           "lock_skipped": []}, open("/repro/meta/env.json", "w"))
open("/repro/meta/seeded.jsonl", "a").write('{"seeded": "torch"}\\n')
print("facts forged", flush=True)
"""


def test_a_job_cannot_forge_the_recorded_container_facts(proj, home, engine, images):
    """Issue 21, M6: a job rewrote /repro/meta/env.json, so its record said whatever OS,
    Python and packages it liked (and `diagnose` explained drift with them). The image's
    facts are captured by repro in a throwaway container of the image that no job ran in;
    what the job reports of its seeding is labelled as its own report."""
    (proj / "examples" / "hello" / "forge.py").write_text(FORGER)
    spec = add_spec(proj, "forger", """\
        image: {build: ../images/train}
        command: [python3, forge.py]
        """)
    p, rec = launch_json(proj, spec)
    assert rec["status"] == "succeeded", p.stderr
    cont = rec["environment"]["container"]
    assert cont["captured"] == "image"
    assert cont["os"].startswith("Debian GNU/Linux") and cont["python"] != "9.9.9"
    numpy = {q["name"].lower(): q["version"] for q in cont["packages"]}["numpy"]
    assert numpy != "0.0.1-forged" and numpy[0].isdigit()
    assert "torch" in cont["seeded"]  # the job's own report: kept, and labelled so
    shown = repro("show", rec["id"], cwd=proj).stdout
    assert "Forged" not in shown and "seeded as reported by the job: " in shown
    # the second run of that image takes the facts captured once (cached on this machine)
    keys = [k for (k,) in sqlite3.connect(home / "local.db").execute(
        "SELECT key FROM image_facts")]
    assert len(keys) == 1 and keys[0].startswith(images["train"])
    _, again = launch_json(proj, spec)
    assert again["environment"]["container"]["packages"] == cont["packages"]
