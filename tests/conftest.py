"""Shared fixtures. Integration tests use the real Docker daemon and never skip: CI runs
them after scripts/ensure-docker, and a missing engine fails them loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import copy_project


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
    return copy_project(tmp_path / "project")
