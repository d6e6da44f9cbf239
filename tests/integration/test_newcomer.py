"""The newcomer's first commands, exactly as the README and the Makefile write them, in a
fresh clone with nothing set in the environment (no REPRO_HOME: the default store is .repro/
in the clone, inside the work tree). The last release passed every test and still failed
here: the snapshot of a subfolder was empty when the store lived in the work tree."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine import LABEL_STORE
from tests.helpers import ROOT, git

pytestmark = pytest.mark.integration

REPRO = Path(sys.executable).parent / "repro"  # the console script `make install` installs


def readme_block(heading: str) -> list[str]:
    """The commands of the first ```sh block under ``heading`` in the README, comments off."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, f"no sh block under {heading}"
    return [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines()
            if ln.split("#", 1)[0].strip()]


def make_recipe(target: str) -> list[str]:
    """The command lines of a Makefile target (its recipe, not its prerequisites)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{target}:"))
    out = []
    for ln in lines[start + 1:]:
        if not ln.startswith("\t"):
            break
        out.append(ln.strip())
    return out


def newcomer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env["REPRO_ARCHIVE_IMAGES"] = "0"  # the tests' one concession to time (conftest)
    return env


def run(argv: list[str], cwd: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, cwd=cwd, env=newcomer_env(), capture_output=True, text=True,
                       timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture
def no_leftovers(engine):
    stores: list[Path] = []
    yield stores
    for store in stores:
        left = engine.find({LABEL_STORE: str(store.resolve())})
        for job in left:
            engine.cleanup(job.id)
        assert left == [], "repro left containers behind"


def test_the_readme_quick_start_as_written(tmp_path, no_leftovers):
    commands = readme_block("## Your project, unchanged: three commands")
    assert [c.split()[:2] for c in commands] == [["repro", "init"], ["repro", "launch"],
                                                 ["repro", "verify"]]
    root = tmp_path / "wordlm"
    shutil.copytree(ROOT / "tests" / "projects" / "wordlm", root)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a fresh clone")
    no_leftovers.append(root / ".repro")
    run_id = None
    for line in commands:
        argv = shlex.split(line.replace("RUN_ID", run_id or "RUN_ID"))
        p = run([str(REPRO), *argv[1:]], cwd=root)
        assert p.returncode == 0, f"{line}: {p.stdout}{p.stderr}"
        if argv[1] == "launch":
            run_id = re.search(r"run ([0-9a-f]{16}) started", p.stderr).group(1)
    assert "IDENTICAL" in p.stdout + p.stderr
    assert (root / ".repro" / "repro.db").is_file()  # the default store, in the work tree


def test_make_demo_as_written_in_a_fresh_clone(tmp_path, no_leftovers, images):
    """`make demo`'s own recipe (and its images step) in a clone of this repository."""
    clone = tmp_path / "repro-clone"
    tracked = git(ROOT, "ls-files", "-z").split("\0")
    for rel in filter(None, tracked):
        src = ROOT / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "a fresh clone")
    no_leftovers.append(clone / ".repro")
    steps = [*make_recipe("images"), *make_recipe("demo")]
    assert steps == ["$(REPRO) image build images/train", "$(REPRO) launch specs/digits-mlp.yaml",
                     "$(REPRO) runs"]
    for line in steps:
        p = run([str(REPRO), *shlex.split(line)[1:]], cwd=clone)
        assert p.returncode == 0, f"{line}: {p.stdout}{p.stderr}"
    p = run([str(REPRO), "runs", "--json"], cwd=clone)
    runs = json.loads(p.stdout)
    assert [r["status"] for r in runs] == ["succeeded"], runs
    p = run([str(REPRO), "show", runs[0]["id"], "--json"], cwd=clone)
    record = json.loads(p.stdout)
    assert record["resolved"]["code"]["files"] == 2  # train.py, make_data.py: not empty
    assert record["resolved"]["code"]["subdir"] == "examples/digits"
    assert set(record["outputs"]) >= {"metrics.json"}
