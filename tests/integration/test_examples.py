"""The example projects, as a user would clone them: a requirements.txt, an unmodified train.py
with argparse flags that prints its loss, and the repro.yaml `repro init` wrote. Each must
launch and verify identical (real PyPI wheels for scikit-learn; Debian's torch)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT, git, repro
from tests.integration.test_replay import run_json


def clone_of(example: str, dest: Path) -> Path:
    shutil.copytree(ROOT / "examples" / example, dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.npy"))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "clone")
    return dest


@pytest.mark.parametrize("example, metrics, seeded", [
    ("sklearn-digits", {"loss", "accuracy"}, {"random", "numpy"}),
    ("torch-regression", {"loss"}, {"random", "numpy", "torch"}),
])
def test_example_project_verifies_identical(example, metrics, seeded, tmp_path, home, images):
    project = clone_of(example, tmp_path / example)
    p, run = run_json("launch", "-q", cwd=project, timeout=1200)
    assert p.returncode == 0, p.stderr
    assert run["status"] == "succeeded"
    assert set(run["metrics"]) == metrics
    assert seeded <= set(run["environment"]["container"]["seeded"])
    assert list(run["outputs"]) == ["weights.npy"]
    p = repro("verify", run["id"], cwd=project, timeout=1200)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "IDENTICAL" in p.stdout + p.stderr
