"""Real projects, unchanged: `repro init`, `repro launch`, `repro verify` on each project of
the corpus in tests/projects (one per layout public projects have), as a newcomer runs them
in a fresh clone: nothing set in the environment (the store is .repro/ in the clone), no
edit to any file, no flag. Each must launch, succeed, and verify IDENTICAL (the real engine,
real PyPI wheels through this machine's CA bundle)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine import LABEL_STORE
from tests.helpers import ROOT, git, repro

pytestmark = pytest.mark.integration

CORPUS = ROOT / "tests" / "projects"

# what init must find, what the run must record, per layout
PROJECTS: dict[str, dict] = {
    "wordlm": {  # PyTorch examples' layout: --data ./data/tiny, modules beside the script
        "command": ["python3", "main.py"], "framework": "argparse",
        "outputs": {"model.npy"},
        "series": {"loss", "ppl", "valid/loss", "valid/ppl", "test/loss", "test/ppl"}},
    "nanogpt": {  # an in-repo package run as a module, setup.py's install_requires
        "command": ["python3", "-m", "nanogpt.train"], "framework": "argparse",
        "dependencies": "setup.py", "outputs": {"out/ckpt.npy"},
        "series": {"train/loss", "val/loss", "loss"}},
    "hydra-sklearn": {  # @hydra.main with a config group; Hydra's own run folder
        "command": ["python3", "train.py", "hydra.run.dir=outputs/run"],
        "framework": "hydra", "excluded": ["outputs/run/*.log"],
        "outputs": {"outputs/run/model.pkl", "outputs/run/scores.json",
                    "outputs/run/.hydra/config.yaml", "outputs/run/.hydra/hydra.yaml",
                    "outputs/run/.hydra/overrides.yaml"},
        "skipped": {"outputs/run/train.log": "excluded by outputs.exclude"},
        "series": {"train/accuracy", "val/accuracy"}},
    "click-app": {
        "command": ["python3", "train.py"], "framework": "click",
        "outputs": {"weights/w1.npy", "weights/w2.npy"}, "series": {"loss", "acc"}},
    "pandas-sklearn": {
        "command": ["python3", "train.py"], "framework": "argparse",
        "outputs": {"predictions.csv"},
        "series": {"train/rmse", "test/rmse", "train/r2", "test/r2"}},
    "charlm-tensorboard": {  # makemore's layout: a SummaryWriter in the work folder
        "command": ["python3", "makemore.py"], "framework": "argparse",
        "excluded": ["**/events.out.tfevents.*"],
        "outputs": {"out/model.npy", "out/samples.txt"}, "skipped_events": 1,
        "series": {"loss", "train/loss", "test/loss"}},
    "uv-app": {  # src layout, uv.lock
        "command": ["python3", "-m", "charlm.train"], "framework": "argparse",
        "dependencies": "uv.lock", "outputs": {"artifacts/counts.npy", "artifacts/result.json"},
        "series": {"train/loss", "val/loss"}},
    "poetry-app": {
        "command": ["python3", "main.py"], "framework": "argparse",
        "dependencies": "poetry.lock", "outputs": {"results/line.json"}, "series": {"mse"}},
    "ignored-data": {  # data/ is git-ignored: an input mounted where the code reads it
        "command": ["python3", "train.py"], "framework": "argparse", "inputs": {"data": "data"},
        "prepare": ["prepare.py"],
        "outputs": {"checkpoints/epoch_10.npy", "checkpoints/epoch_20.npy"},
        "series": {"train/loss", "test/acc"}},
}


def clone(name: str, dest: Path) -> Path:
    """A fresh clone of a corpus project: its files committed, nothing else."""
    shutil.copytree(CORPUS / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "clone")
    return dest


def newcomer(*args: str, cwd: Path, timeout: float = 1500) -> tuple[subprocess.CompletedProcess,
                                                                     dict | None]:
    p = repro(*args, "--json", cwd=cwd, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing set, as on a newcomer's machine (image archiving stays off: the tests'
    one concession to time, see conftest)."""
    for key in list(os.environ):
        if key.startswith("REPRO_") and key != "REPRO_ARCHIVE_IMAGES":
            monkeypatch.delenv(key)


def test_the_corpus_has_a_project_for_every_layout():
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(PROJECTS)


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_init_launch_verify_with_no_edits(name, tmp_path, fresh_env, engine):
    want = PROJECTS[name]
    root = clone(name, tmp_path / name)
    for script in want.get("prepare", []):  # what the project's README says to run first
        subprocess.run([sys.executable, script], cwd=root, check=True, capture_output=True)
    tracked = git(root, "ls-files", "-s")
    try:
        p, done = newcomer("init", cwd=root)
        assert p.returncode == 0, p.stderr
        assert done["command"] == want["command"], done
        assert done["framework"] == want["framework"]
        assert done["inputs"] == want.get("inputs", {})
        assert done["excluded"] == want.get("excluded", [])
        assert done["dependencies"] == want.get("dependencies", "requirements.txt")
        assert not [n for n in done["notes"] if "no declared dependency provides" in n], done
        assert git(root, "ls-files", "-s") == tracked  # no file of the project edited
        assert git(root, "status", "--porcelain", "--untracked-files=no") == ""

        p, run = newcomer("launch", cwd=root)
        assert p.returncode == 0, p.stderr
        assert run["status"] == "succeeded", run["stderr_tail"]
        assert not run["resolved"]["code"]["dirty"]  # init's files and the store are not code
        assert set(run["outputs"]) == want["outputs"], run["outputs"]
        skipped = run["skipped_outputs"]
        if "skipped_events" in want:
            assert len(skipped) == want["skipped_events"], skipped
            assert all("events.out.tfevents." in k and v == "excluded by outputs.exclude"
                       for k, v in skipped.items())
        else:
            assert skipped == want.get("skipped", {})
        assert want["series"] <= set(run["series"]), sorted(run["series"])

        p, rec = newcomer("verify", run["id"], cwd=root)
        assert p.returncode == 0, p.stdout + p.stderr
        assert rec["verdict"]["result"] == "identical", rec["verdict"]
        assert sorted(rec["verdict"]["outputs"]["identical"]) == sorted(want["outputs"])
    finally:
        left = engine.find({LABEL_STORE: str((root / ".repro").resolve())})
        for job in left:
            engine.cleanup(job.id)
        assert left == [], "repro left containers behind"


def test_init_again_after_the_dependencies_changed(tmp_path, fresh_env, engine):
    """A second init updates the lock it wrote (and the spec's use of it); an edited spec is
    kept, and init says what it lacks once the dependencies are gone. No file init wrote
    ever makes the code dirty."""
    root = clone("wordlm", tmp_path / "wordlm")
    lock = root / "repro" / "requirements.lock"
    p, done = newcomer("init", cwd=root)
    assert p.returncode == 0, p.stderr
    assert "numpy==2.1.3" in lock.read_text() and "click" not in lock.read_text()

    (root / "requirements.txt").write_text("numpy==2.1.3\nclick==8.1.7\n")
    git(root, "commit", "-qam", "click")
    p, again = newcomer("init", cwd=root)
    assert p.returncode == 0, p.stderr
    assert again["written"] == ["repro/requirements.lock"] and "click==8.1.7" in lock.read_text()
    assert sorted(again["unchanged"]) == ["repro.yaml", "repro/image/recipe.yaml"]

    spec = root / "repro.yaml"
    spec.write_text(spec.read_text() + "timeout: 1h\n")  # the user's own edit
    (root / "requirements.txt").write_text("")
    git(root, "commit", "-qam", "no dependencies")
    p, third = newcomer("init", cwd=root)
    assert p.returncode == 0, p.stderr
    assert sorted(third["removed"]) == ["repro/image/recipe.yaml", "repro/requirements.lock"]
    assert third["kept"] == ["repro.yaml"] and "timeout: 1h" in spec.read_text()
    assert any("names repro/requirements.lock, which is gone" in n for n in third["notes"])
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
