"""Shared fixtures. Integration tests use the real Docker daemon and never skip: CI runs
them after scripts/ensure-docker, and a missing engine fails them loudly."""

from __future__ import annotations

import uuid
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


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory):
    """One real PostgreSQL 15 server for the session (tests/pg.py); never skipped: CI runs
    scripts/ensure-postgres first, and missing binaries fail loudly."""
    from tests import pg

    server = pg.start(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per record store: the embedded SQLite file, and a fresh database on
    the session's PostgreSQL server (REPRO_STORE set to it)."""
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        db = f"t{uuid.uuid4().hex[:12]}"
        server.create_db(db)
        monkeypatch.setenv("REPRO_STORE", server.url(db=db))
    else:
        monkeypatch.delenv("REPRO_STORE", raising=False)
    return str(request.param)
