"""The job sees the project as its author runs it (the real daemon): a writable copy of the
code snapshot as its working folder, the code root importable, `python -m`, relative data
paths, a git-ignored data folder mounted where the code opens it; its outputs are what it
created or changed there. A run recorded in the old layout (an empty /repro/outputs, the
code read-only) replays in that layout, also from a bundle."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from orchestrator.snapshot import cache_problems
from orchestrator.store import open_store
from tests.helpers import make_repo, repro
from tests.integration.test_replay import run_json

pytestmark = pytest.mark.integration

TRAIN = textwrap.dedent('''\
    """A model fit on a tracked word list and a git-ignored data folder."""
    import argparse
    import json
    import os

    from mypkg.model import fit

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="./data/raw")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    words = open("names.txt").read().split()  # relative to the project, as its author runs it
    raw = sorted(os.listdir(args.data))
    sizes = [os.path.getsize(os.path.join(args.data, n)) for n in raw]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump({"fit": fit(words), "raw": raw, "sizes": sizes}, f)
    with open("state.json", "w") as f:  # a tracked file the job rewrites: an output
        json.dump({"trained": True}, f)
    os.makedirs("tb", exist_ok=True)
    with open("tb/events.out.tfevents.123.host", "w") as f:  # excluded by the spec
        f.write("noise")
    same = os.path.samefile("/repro/outputs", ".")
    print(f"cwd {os.getcwd()} outputs-is-cwd {same} loss {fit(words):.3f}")
    ''')

BASE = Path(__file__).resolve().parents[2] / "images" / "base"
SPEC = textwrap.dedent(f"""\
    version: 1
    name: layout
    image: {{build: {BASE}}}
    command: [python3, -m, mypkg.train, --data, ./data/raw]
    inputs:
      raw: {{path: data/raw, mount: data/raw}}
    outputs: {{exclude: ["tb/**"]}}
    metrics_from_log: {{loss: 'loss (?P<value>[0-9.]+)'}}
    seed: 1
    resources: {{cpus: 1, memory: 512m}}
    """)


@pytest.fixture
def author(tmp_path: Path, home: Path, images) -> Path:
    """A project laid out as its author runs it: an in-repo package run with `python -m`,
    a tracked word list read by a relative path, and a git-ignored data folder."""
    root = make_repo(tmp_path / "author", {
        ".gitignore": "data/raw/\n",
        "names.txt": "ada grace alan\n",
        "state.json": "{}\n",
        "mypkg/__init__.py": "",
        "mypkg/model.py": "def fit(words):\n    return sum(map(len, words)) / len(words)\n",
        "mypkg/train.py": TRAIN,
        "repro.yaml": SPEC,
    })
    raw = root / "data" / "raw"  # git-ignored: data, as projects keep it
    raw.mkdir(parents=True)
    (raw / "a.bin").write_bytes(b"\x00" * 100)
    (raw / "b.bin").write_bytes(b"\x01" * 7)
    return root


def test_the_job_runs_in_a_copy_of_its_project_and_verifies(author, home):
    p, run = run_json("launch", cwd=author, timeout=600)
    assert p.returncode == 0, p.stderr
    assert run["status"] == "succeeded", run["stderr_tail"]
    assert run["resolved"]["layout"] == "project" and not run["resolved"]["code"]["dirty"]
    assert run["resolved"]["inputs"]["raw"]["mount"] == "data/raw"
    assert run["resolved"]["outputs_exclude"] == ["tb/**"]
    # what it created or changed, nothing of the project it left alone (names.txt, mypkg/),
    # nor the input mounted inside it
    assert sorted(run["outputs"]) == ["out/model.json", "state.json"]
    assert run["skipped_outputs"] == {"tb/events.out.tfevents.123.host":
                                      "excluded by outputs.exclude"}
    assert "cwd /repro/code outputs-is-cwd True loss 4.000" in p.stderr
    store = open_store(home)
    model = json.loads(store.artifacts.local_path(
        run["outputs"]["out/model.json"]["sha256"]).read_text())
    assert model == {"fit": 4.0, "raw": ["a.bin", "b.bin"], "sizes": [100, 7]}
    # the job wrote its copy; the store's unpacked snapshot is untouched
    snapshot = run["resolved"]["code"]["snapshot"]
    assert cache_problems(snapshot, store.code_cache / snapshot.split(":")[1], store) == []

    p, rec = run_json("verify", run["id"], cwd=author, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert rec["verdict"]["result"] == "identical"
    assert sorted(rec["verdict"]["outputs"]["identical"]) == ["out/model.json", "state.json"]
    assert rec["resolved"]["layout"] == "project"

    # a bundle carries the layout: verified in a store that never saw the run (a folder
    # input is hashed, not carried: given again, hash-checked)
    bundle = author.parent / "bundle"
    assert repro("export", run["id"], "--bundle", str(bundle), cwd=author).returncode == 0
    p, rec = run_json("verify", str(bundle), "--input", f"raw={author / 'data' / 'raw'}",
                      cwd=author.parent,
                      env={"REPRO_HOME": str(author.parent / "other-home")}, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert rec["verdict"]["result"] == "identical"


LEGACY_JOB = textwrap.dedent('''\
    import os
    print("cwd", os.getcwd(), "code writable", os.access("/repro/code", os.W_OK))
    open("result.txt", "w").write("42\\n")
    ''')


def test_a_run_recorded_in_the_old_layout_replays_in_it(tmp_path, home, images):
    """A record without a layout is one made before it: its replay (here, and from a
    bundle) runs in an empty /repro/outputs with the code read-only, as it was recorded."""
    root = make_repo(tmp_path / "old", {"job.py": LEGACY_JOB, "repro.yaml": textwrap.dedent(f"""\
        version: 1
        name: legacy
        image: {{build: {BASE}}}
        command: [python3, /repro/code/job.py]
        seed: 3
        """)})
    p, run = run_json("launch", cwd=root, timeout=600)
    assert p.returncode == 0 and "cwd /repro/code code writable True" in p.stderr, p.stderr
    # the record as a repro from before the layout wrote it: no layout, PYTHONPATH its own
    db = sqlite3.connect(home / "repro.db")
    db.execute("UPDATE runs SET record = json_set(json_remove(record, '$.resolved.layout'), "
               "'$.resolved.env.PYTHONPATH', '/repro/lib') WHERE id = ?", (run["id"],))
    db.commit()
    db.close()
    p, shown = run_json("show", run["id"], cwd=root)
    assert "layout" not in shown["resolved"] or shown["resolved"]["layout"] == "outputs"

    p, rec = run_json("verify", run["id"], cwd=root, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert rec["verdict"]["result"] == "identical" and rec["resolved"]["layout"] == "outputs"
    log = repro("logs", rec["id"], cwd=root).stdout
    assert "cwd /repro/outputs code writable False" in log

    bundle = tmp_path / "bundle"
    assert repro("export", run["id"], "--bundle", str(bundle), cwd=root).returncode == 0
    p, rec = run_json("verify", str(bundle), cwd=tmp_path,
                      env={"REPRO_HOME": str(tmp_path / "elsewhere")}, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert rec["resolved"]["layout"] == "outputs"
    log = repro("logs", rec["id"], cwd=tmp_path, env={"REPRO_HOME": str(tmp_path / "elsewhere")})
    assert "cwd /repro/outputs code writable False" in log.stdout


BYTECODE_JOB = textwrap.dedent('''\
    import importlib.util
    import json
    import sys

    from mypkg.model import fit

    pyc = importlib.util.cache_from_source(json.__file__)
    with open(pyc, "rb") as f:
        flags = int.from_bytes(f.read(8)[4:8], "little")
    print(f"prefix {sys.pycache_prefix} json-pyc-flags {flags}")
    open("result.txt", "w").write(str(fit(["ab", "cde"])))
    ''')


@pytest.mark.parametrize("determinism", ["strict", "off"])
def test_the_image_bytecode_is_read_and_none_is_written(tmp_path, home, images, determinism):
    """Python reads the image's .pyc files (written by hash when the root filesystem was
    built: Debian's, stamped by mtime, went stale when the tar clamped the mtimes), and
    writes none into the working folder, whatever the determinism: an in-repo package
    imported is no output."""
    root = make_repo(tmp_path / "p", {
        "mypkg/__init__.py": "",
        "mypkg/model.py": "def fit(words):\n    return sum(map(len, words)) / len(words)\n",
        "train.py": BYTECODE_JOB,
        "repro.yaml": textwrap.dedent(f"""\
            version: 1
            name: bytecode
            image: {{build: {BASE}}}
            command: [python3, train.py]
            determinism: {determinism}
            seed: 1
            """),
    })
    p, run = run_json("launch", cwd=root, timeout=600)
    assert p.returncode == 0, p.stderr
    assert run["resolved"]["env"]["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "PYTHONPYCACHEPREFIX" not in run["resolved"]["env"]
    # PEP 552 flags 0b11: hash-based, checked against the source
    assert "prefix None json-pyc-flags 3" in p.stderr
    assert sorted(run["outputs"]) == ["result.txt"]
