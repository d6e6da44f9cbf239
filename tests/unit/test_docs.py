"""The docs and the habits they describe stay true: RELIABILITY.md names only tests that
exist, `make lint` mirrors the pre-commit hooks, and the fast tier admits no process."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_reliability_md_names_exists():
    text = (ROOT / "RELIABILITY.md").read_text()
    refs = re.findall(r"`([\w/.]*)::(\w+)`", text)
    assert len(refs) > 20
    current: Path | None = None
    missing = []
    for file, name in refs:
        if file:
            hits = [ROOT / file] if "/" in file else list((ROOT / "tests").rglob(file))
            assert len(hits) == 1 and hits[0].is_file(), f"RELIABILITY.md names {file}"
            current = hits[0]
        assert current is not None, f"::{name} with no file before it"
        if not re.search(rf"^def {name}\(", current.read_text(), re.M):
            missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert missing == []


def _lint_recipe() -> list[str]:
    """The commands of the Makefile's `lint` target, $(VENV) spelled as .venv."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = lines.index("lint: install") + 1
    recipe = []
    for line in lines[start:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(VENV)", ".venv"))
    return recipe


def test_make_lint_runs_the_pre_commit_hooks_in_their_order():
    from pre_commit.clientlib import load_config

    config = load_config(str(ROOT / ".pre-commit-config.yaml"))  # validates it, as pre-commit does
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [h["id"] for h in hooks] == ["ruff", "mypy"]
    # the venv's tools, run once on the whole tree ("system" reads back as "unsupported"
    # from pre-commit 4.4 on: the same language, renamed)
    assert all(h["language"] in ("system", "unsupported") for h in hooks)
    assert all(h["pass_filenames"] is False for h in hooks)
    assert [h["entry"] for h in hooks] == _lint_recipe()


@pytest.mark.process
def test_the_fast_tier_fails_a_test_that_starts_a_process_unmarked(tmp_path):
    (tmp_path / "test_tier.py").write_text(
        "import subprocess, pytest\n"
        "def test_unmarked():\n    subprocess.run(['true'])\n"
        "@pytest.mark.process\ndef test_marked():\n    subprocess.run(['true'])\n"
        "def test_quiet():\n    assert 1\n")
    env = {**os.environ, "REPRO_FAST_TIER": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_tier.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout
    assert "test_unmarked starts a process (['true']) in the fast tier: mark it " \
           "@pytest.mark.process" in done.stdout
    assert "1 failed, 2 passed" in done.stdout
