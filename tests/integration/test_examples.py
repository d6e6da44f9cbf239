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


def test_the_resumable_example_passes_a_segment_in_numpy_and_in_pytorch(tmp_path, home,
                                                                        images):
    """examples/resumable as a user clones it: both scripts verify a segment identical; the
    PyTorch one resumed without its generator fails, naming the tensors of the checkpoint
    that differ (read here without torch: torchfile)."""
    project = clone_of("resumable", tmp_path / "resumable")
    text = (project / "torch.yaml").read_text()
    (project / "forgetful.yaml").write_text(
        text.replace('--every, "100"]', '--every, "100", --forget-rng]').replace(
            "name: resumable-torch", "name: forgetful"))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "a resume that forgets its generator")
    for spec, checkpoint in (("repro.yaml", "checkpoints/step_400.npz"),
                             ("torch.yaml", "checkpoints/step_400.pt")):
        p, run = run_json("launch", spec, "-q", cwd=project, timeout=1200)
        assert p.returncode == 0, p.stderr
        p, rep = run_json("verify", run["id"], "--segment", "300", cwd=project, timeout=1200)
        assert p.returncode == 13, p.stdout + p.stderr
        assert rep["verdict"]["outputs"]["identical"] == [checkpoint]
    p, run = run_json("launch", "forgetful.yaml", "-q", cwd=project, timeout=1200)
    assert p.returncode == 0, p.stderr
    p, rep = run_json("verify", run["id"], "--segment", "300", cwd=project, timeout=1200)
    assert p.returncode == 8, p.stdout + p.stderr
    differ = rep["verdict"]["outputs"]["differ"][0]
    assert differ["path"] == "checkpoints/step_400.pt"
    named = {n for n, d in differ["content"]["arrays"].items() if d.get("differing")}
    assert {"model.0.weight", "optimizer.state.0.momentum_buffer", "batches"} <= named
