"""Shared fixtures. Integration tests use the real Docker daemon and never skip: CI runs
them after scripts/ensure-docker, and a missing engine fails them loudly."""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import copy_project

FAST_TIER = os.environ.get("REPRO_FAST_TIER") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the session's PostgreSQL server are marked `pg` by what they use, so the
    fast tier (`make unit`) can leave them out without anyone remembering to mark them."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("backend") == "postgresql"
        if on_pg or "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pg)


_running: list[pytest.Item] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _running.append(item)
    try:
        yield
    finally:
        _running.pop()


def _refuse_processes() -> None:
    """The fast tier (REPRO_FAST_TIER=1, `make unit`) starts no process: a test that starts
    one (git, python, a server), in its body or in a fixture of any scope, fails and says to
    mark it `process`. Nothing slips into the tier unnoticed and slows it down."""
    popen_init = subprocess.Popen.__init__
    process_start = multiprocessing.process.BaseProcess.start

    def allowed(what: object) -> None:
        item = _running[-1] if _running else None
        if item is None or item.get_closest_marker("process") is None:
            name = item.nodeid if item is not None else "collection"
            pytest.fail(f"{name} starts a process ({what}) in the fast tier: mark it "
                        "@pytest.mark.process", pytrace=False)

    def popen(self, args, *a, **k):  # type: ignore[no-untyped-def]
        allowed(args if isinstance(args, str) else list(args)[:2])
        popen_init(self, args, *a, **k)

    def start(self):  # type: ignore[no-untyped-def]
        allowed("multiprocessing")
        process_start(self)

    subprocess.Popen.__init__ = popen  # type: ignore[method-assign]
    multiprocessing.process.BaseProcess.start = start  # type: ignore[method-assign]


if FAST_TIER:
    _refuse_processes()


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
