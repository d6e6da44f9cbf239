"""Replay, verify, bundles and registries against the real daemon (and a real registry)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from orchestrator.engine import Engine
from orchestrator.store import open_store
from tests.helpers import repro
from tests.integration.conftest import add_spec, launch_json

pytestmark = pytest.mark.integration


def run_json(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    p = repro(*args, "--json", cwd=cwd, env=env, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


def test_digits_replays_identical_from_the_record_alone(proj):
    spec = proj / "specs" / "digits-mlp.yaml"
    _, orig = launch_json(proj, spec, "--param", "epochs=5")
    # the spec file changing afterwards must not matter: replay reads the record only
    spec.write_text(spec.read_text().replace("lr: 0.1", "lr: 0.5"))
    p, rec = run_json("replay", orig["id"][:8], cwd=proj)
    assert p.returncode == 0, p.stderr
    assert rec["replay_of"] == orig["id"] and rec["id"] != orig["id"]
    assert rec["spec_digest"] == orig["spec_digest"]
    assert rec["resolved"]["command"] == orig["resolved"]["command"]  # --lr=0.1, epochs=5
    v = rec["verdict"]
    assert v["result"] == "identical" and v["environment"] == []
    assert sorted(v["outputs"]["identical"]) == sorted(orig["outputs"])
    assert all(m["delta"] == 0 for m in v["metrics"])
    human = repro("verify", orig["id"], "-q", cwd=proj)
    assert human.returncode == 0 and "IDENTICAL" in human.stdout


def test_nondeterministic_example_differs_and_names_the_file(proj, tmp_path):
    _, orig = launch_json(proj, proj / "specs" / "nondeterministic.yaml")
    junit = tmp_path / "verify.xml"
    p, rec = run_json("verify", orig["id"], "--junit", str(junit), cwd=proj)
    assert p.returncode == 8, p.stderr
    differ = [d["path"] for d in rec["verdict"]["outputs"]["differ"]]
    assert "samples.txt" in differ and rec["verdict"]["result"] == "differs"
    samples = next(d for d in rec["verdict"]["outputs"]["differ"] if d["path"] == "samples.txt")
    assert samples["content"]["first_line"] == 1  # "drawn at <the wall clock>"
    assert samples["content"]["original"].startswith("drawn at ")
    suite = ET.parse(junit).getroot()
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "output samples.txt" in failed and int(suite.get("failures")) == len(failed)
    human = repro("verify", orig["id"], "-q", cwd=proj)
    assert human.returncode == 8 and "samples.txt" in human.stdout and "DIFFERS" in human.stdout
    assert "samples.txt: " in human.stdout and "lines differ, first at line 1" in human.stdout
    # metrics within a tolerance: reported as within-tolerance (exit 0), never identical
    p, rec = run_json("verify", orig["id"], "--tolerance", "metrics.pi_estimate=0.05",
                      cwd=proj)
    assert p.returncode == 0 and rec["verdict"]["result"] == "within-tolerance"


def test_replay_that_cannot_find_its_input_exits_9(proj, tmp_path):
    data = proj / "data" / "big.bin"
    data.write_bytes(b"x" * 4096)
    spec = add_spec(proj, "bigin", """\
        command: [python3, -c, "open('head', 'wb').write(open('/repro/inputs/big', 'rb').read(1))"]
        inputs: {big: {path: ../data/big.bin}}
        """)
    env = {"REPRO_INPUT_STORE_LIMIT": "100"}  # too big to keep a copy in the store
    p, orig = run_json("launch", str(spec.relative_to(proj)), cwd=proj, env=env)
    assert p.returncode == 0 and orig["resolved"]["inputs"]["big"]["stored"] is False
    assert "input big (0 MiB) is larger than REPRO_INPUT_STORE_LIMIT" in p.stderr
    shown = repro("show", orig["id"], cwd=proj).stdout
    assert "big (not in the store)" in shown
    data.write_bytes(b"y" * 4096)
    p = repro("verify", orig["id"], cwd=proj)
    assert p.returncode == 9
    assert p.stderr.strip().splitlines()[-1].startswith(
        f"error: run {orig['id']}: input big (sha256 ")
    data.write_bytes(b"x" * 4096)  # restored: the original file is used again
    assert repro("verify", orig["id"], "-q", cwd=proj).returncode == 0


def test_hardware_change_is_reported_and_strict_env_refuses(proj, home):
    _, orig = launch_json(proj, proj / "specs" / "hello.yaml")
    store = open_store(home)
    rec = store.runs.get(orig["id"])
    rec.environment.host.cpu.model = "Imaginary CPU 9000"
    store.runs.save(rec)
    p = repro("replay", orig["id"], "--strict-env", cwd=proj)
    assert p.returncode == 9 and "--strict-env" in p.stderr and "cpu.model" in p.stderr
    p, rep = run_json("replay", orig["id"], cwd=proj)
    assert p.returncode == 0 and "cpu.model differs from the recording host" in p.stderr
    changes = {c["fact"]: c for c in rep["verdict"]["environment"]}
    assert changes["cpu.model"]["original"] == "Imaginary CPU 9000"
    assert rep["verdict"]["result"] == "identical"  # outputs still equal: said, not hidden


def unique_image_project(proj: Path, script: str = "hello.py") -> Path:
    """A recipe whose image id exists only for this test (so it can be removed)."""
    recipe = proj / "images" / "unique"
    recipe.mkdir()
    (recipe / "recipe.yaml").write_text("base: ../base\n")
    (recipe / "Dockerfile").write_text(f"ARG BASE\nFROM ${{BASE}}\nRUN echo {uuid.uuid4()} > "
                                       "/etc/repro-test-id\n")
    return add_spec(proj, "portable", f"""\
        image: {{build: ../images/unique}}
        command: [python3, /repro/code/{script}]
        """)


@pytest.mark.archive
def test_bundle_verifies_on_a_fresh_store_after_the_image_is_gone(proj, home, tmp_path,
                                                                   engine):
    """The CI story: launch, export a bundle, remove the image and the store, verify from the
    bundle alone: identical."""
    spec = unique_image_project(proj)
    p, orig = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    image = orig["resolved"]["image"]
    assert image["archive"] and "archiving image" in p.stderr
    bundle = tmp_path / "bundle"
    p, out = run_json("export", orig["id"], "--bundle", str(bundle), cwd=proj)
    assert p.returncode == 0, p.stderr
    roles = {m["role"] for m in out["artifacts"].values()}
    assert {"code", "image"} <= roles and all(m["bundled"] for m in out["artifacts"].values())
    shutil.rmtree(home)  # the store that recorded the run is gone
    try:
        engine.remove_image(image["digest"])
        assert engine.image(image["digest"]) is None
        fresh = {"REPRO_HOME": str(tmp_path / "fresh-home")}
        p, rec = run_json("verify", str(bundle), cwd=tmp_path, env=fresh)
        assert p.returncode == 0, p.stderr
        assert "loading image" in p.stderr and rec["verdict"]["result"] == "identical"
        assert rec["replay_of"] == orig["id"]
        # a corrupt bundle is caught by its hashes, names the artifact, and exits 9
        code_hex = next(h for h, m in out["artifacts"].items() if m["role"] == "code")
        bad = tmp_path / "bad-bundle"
        shutil.copytree(bundle, bad)
        target = bad / "artifacts" / code_hex
        target.chmod(0o644)
        data = bytearray(target.read_bytes())
        data[100] ^= 0xFF
        target.write_bytes(bytes(data))
        p = repro("verify", str(bad), cwd=tmp_path,
                  env={"REPRO_HOME": str(tmp_path / "third-home")})
        assert p.returncode == 9 and f"artifacts/{code_hex} (code) is corrupt" in p.stderr
        (bad / "manifest.json").write_text("{not json")
        p = repro("verify", str(bad), cwd=tmp_path)
        assert p.returncode == 2 and "not a readable manifest" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    finally:
        engine.remove_image(image["digest"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_registry(folder: Path, htpasswd: Path | None = None) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on 127.0.0.1; with ``htpasswd``, it asks
    for basic auth. Yields HOST:PORT."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed; run scripts/ensure-docker"
    port = _free_port()
    config = folder / "registry.yml"
    auth = (f"auth:\n  htpasswd:\n    realm: repro-test\n    path: {htpasswd}\n"
            if htpasswd else "")
    config.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {folder / 'registry-data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n" + auth)
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def registry(tmp_path: Path):
    with serve_registry(tmp_path) as where:
        yield where


def test_push_then_launch_pinned_by_digest_pulls_when_absent(proj, registry, images,
                                                             engine: Engine):
    repo = f"{registry}/repro-base"
    p, pushed = run_json("image", "push", images["base"], repo, cwd=proj)
    assert p.returncode == 0, p.stderr
    assert pushed["image"] == images["base"] and pushed["digest"].startswith("sha256:")
    pinned = pushed["ref"]
    assert pinned == f"{repo}@{pushed['digest']}"
    # drop every reference to the registry copy (the image itself stays for other tests)
    for ref in (pinned, f"{repo}:{images['base'][7:19]}"):
        engine.remove_image(ref)
    assert engine.image(pinned) is None
    spec = add_spec(proj, "pinned", f"""\
        image: {{ref: "{pinned}"}}
        command: [python3, /repro/code/hello.py]
        """)
    try:
        p, rec = launch_json(proj, spec, "--strict")
    finally:
        engine.remove_image(pinned)  # the pulled reference; the image stays
    assert p.returncode == 0, p.stderr
    assert f"pulling {pinned}" in p.stderr
    assert rec["resolved"]["image"] == {**rec["resolved"]["image"], "digest": images["base"],
                                        "repo_digest": pushed["digest"], "ref": pinned}
    # a tag is refused under --strict, with the field named
    tagged = add_spec(proj, "tagged", """\
        image: {ref: "repro/base:latest"}
        command: [python3, /repro/code/hello.py]
        """)
    p = repro("launch", str(tagged.relative_to(proj)), "--strict", cwd=proj)
    assert p.returncode == 2 and "image.ref: 'repro/base:latest' is a tag, not pinned" in p.stderr


UNSEEDED = """\
import json, random
import numpy as np
draws = {"random": random.random(), "legacy": float(np.random.rand()),
         "rng": float(np.random.default_rng().random()),
         "rng2": float(np.random.default_rng().random())}
open("/repro/outputs/draws.json", "w").write(json.dumps(draws))
"""


def test_an_unseeded_script_replays_identical_with_nothing_to_change(proj):
    """Zero-touch seeding: the runtime seeds random at start and numpy when it is imported
    (default_rng() included); determinism: off turns it off, and then it differs."""
    (proj / "examples" / "hello" / "unseeded.py").write_text(UNSEEDED)
    spec = add_spec(proj, "unseeded", """\
        command: [python3, /repro/code/unseeded.py]
        seed: 7
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    assert rec["environment"]["container"]["seeded"] == ["numpy", "random"]
    draws = json.loads(open_store().artifacts.local_path(
        rec["outputs"]["draws.json"]["sha256"]).read_text())
    assert draws["rng"] != draws["rng2"]  # each default_rng() its own stream, both seeded
    p, rep = run_json("replay", rec["id"], cwd=proj)
    assert p.returncode == 0 and rep["verdict"]["result"] == "identical", p.stderr
    off = add_spec(proj, "unseeded-off", """\
        command: [python3, /repro/code/unseeded.py]
        seed: 7
        determinism: off
        """)
    p, rec = launch_json(proj, off)
    assert rec["environment"]["container"]["seeded"] == []
    p, rep = run_json("replay", rec["id"], cwd=proj)
    assert p.returncode == 8 and rep["verdict"]["result"] == "differs"


def test_a_job_that_leaves_nothing_to_compare_does_not_verify(proj):
    spec = add_spec(proj, "silent", """\
        command: [python3, -c, "import random; print(random.random())"]
        determinism: off
        """)
    p, rec = launch_json(proj, spec)
    assert p.returncode == 0
    p, rep = run_json("verify", rec["id"], cwd=proj)
    assert p.returncode == 11 and rep["verdict"]["result"] == "nothing-compared"
    logs = add_spec(proj, "silent-logs", """\
        command: [python3, -c, "import random; print(random.random())"]
        determinism: off
        compare: [outputs, metrics, logs]
        """)
    p, rec = launch_json(proj, logs)
    p, rep = run_json("verify", rec["id"], cwd=proj)
    assert p.returncode == 8 and rep["verdict"]["logs"]["first_difference"]["line"] == 1


def test_outputs_come_out_by_path_and_replays_are_marked_in_the_table(proj):
    _, orig = launch_json(proj, proj / "specs" / "hello.yaml")
    p = repro("cat", orig["id"], "hello.txt", cwd=proj)
    assert p.returncode == 0 and p.stdout == "hello\n"
    out = proj / "got.txt"
    p, doc = run_json("get", orig["id"], "hello.txt", "-o", str(out), cwd=proj)
    assert p.returncode == 0 and out.read_text() == "hello\n"
    assert doc["sha256"] == orig["outputs"]["hello.txt"]["sha256"]
    p = repro("cat", orig["id"], "nope.txt", cwd=proj)
    assert p.returncode == 2 and "has no output 'nope.txt' (outputs: hello.txt)" in p.stderr
    _, rep = run_json("replay", orig["id"], cwd=proj)
    table = repro("runs", cwd=proj).stdout
    assert f"↺ {orig['id'][:8]} identical" in table
