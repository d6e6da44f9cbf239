"""Shared fixtures. Integration tests use the real Docker daemon and never skip: CI runs
them after scripts/ensure-docker, and a missing engine fails them loudly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT, git


@pytest.fixture(autouse=True)
def _image_archiving(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker save` of a 225 MB image per fresh store would cost seconds per test: it is off
    except in tests marked `archive`, which exercise it for real."""
    if request.node.get_closest_marker("archive") is None:
        monkeypatch.setenv("REPRO_ARCHIVE_IMAGES", "0")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh REPRO_HOME for this test."""
    h = tmp_path / "repro-home"
    monkeypatch.setenv("REPRO_HOME", str(h))
    return h


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed copy of the repository's specs, examples, images and data: a clean work
    tree, whatever state the developer's checkout is in."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in ("specs", "examples", "images", "data"):
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "outputs"))
    (dest / ".gitignore").write_text(".repro/\n")
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "copy of the examples")
    return dest
