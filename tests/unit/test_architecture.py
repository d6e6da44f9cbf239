"""The architecture as docs/ARCHITECTURE.md draws it, kept true by reading the code: which
package may import which, the record-store seam held by its callers, and migrations that
agree between the backends."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from orchestrator.store import RECORD_STORES
from orchestrator.store.migrations import LATEST, MIGRATIONS
from orchestrator.store.pg_schema import BASELINE_VERSION, PG_MIGRATIONS
from orchestrator.store.protocol import RecordStore

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"

# the modules below the store: documents, errors, hashing and readers of untrusted input
STORE_MAY_IMPORT = {"errors", "hashing", "record", "settings", "untrusted", "store"}


def imports_of(path: Path) -> set[str]:
    """The orchestrator modules ``path`` imports (top-level name under orchestrator/),
    at module level or inside functions."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]  # __init__: its own
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            if node.module:
                names.append(base + node.module.split("."))
            else:  # from . import x, y
                names.extend(base + [alias.name] for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name.split(".") for alias in node.names)
        found.update(parts[1] for parts in names
                     if len(parts) > 1 and parts[0] == "orchestrator")
    return found


def test_the_store_imports_nothing_above_it():
    """The store is a layer: runs, engine, snapshot and the CLI use it, never the reverse
    (store/fsck.py imported the engine and the snapshot, a package cycle)."""
    above = {str(p.relative_to(ROOT)): sorted(imports_of(p) - STORE_MAY_IMPORT)
             for p in (PACKAGE / "store").glob("*.py")}
    assert {k: v for k, v in above.items() if v} == {}


def test_callers_hold_the_record_store_protocol_never_a_backends_database():
    """Outside store/, nothing reaches a backend's connection or tests its SQL dialect:
    what differs between backends is a capability of the protocol (``runs.shared``)."""
    reach = re.compile(r"\.runs\.db\b|\bdialect\b")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in PACKAGE.rglob("*.py")
             if "store" not in p.relative_to(PACKAGE).parts[:1]
             for n, line in enumerate(p.read_text().splitlines(), 1) if reach.search(line)]
    assert found == []


def test_every_record_store_backend_provides_the_protocol(tmp_path):
    store = RECORD_STORES["sqlite"](str(tmp_path / "repro.db"))
    try:
        missing = [name for name in dir(RecordStore)
                   if not name.startswith("_") and not hasattr(store, name)]
        assert missing == []
        assert store.shared is False and store.schema_version == LATEST
    finally:
        store.close()


def test_sqlite_and_postgresql_migrations_agree_in_numbers_and_names():
    sqlite = [(version, name) for version, name, _ in MIGRATIONS]
    postgresql = BASELINE_VERSION + [(version, name) for version, name, _ in PG_MIGRATIONS]
    assert sqlite == postgresql
    assert [version for version, _ in sqlite] == list(range(1, LATEST + 1))
    assert len({name for _, name in sqlite}) == len(sqlite)


def test_the_module_map_names_every_module_and_nothing_else():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    mapped = re.findall(r"^\| `(orchestrator/[\w/]+\.py)` \| \S", text, re.M)
    assert len(mapped) == len(set(mapped)), "a module is in the map twice"
    present = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
               if "static" not in p.parts}
    assert {"missing from the map": sorted(present - set(mapped)),
            "in the map, not in the code": sorted(set(mapped) - present)} == \
        {"missing from the map": [], "in the map, not in the code": []}


def test_the_run_lifecycle_does_not_import_what_builds_on_it():
    """runner.py is the lifecycle that replay, schedulers and sweeps build on: importing
    them back was a cycle (run_on_node lived in runner.py and imported replay and slurm)."""
    assert imports_of(PACKAGE / "runner.py") & {"replay", "slurm", "scheduler", "sweep",
                                                "diagnose", "cli"} == set()


def test_no_module_is_over_500_lines_without_a_reason_in_its_docstring():
    """One job per module: a long one says why it is one job (cli.py had reached 1,394)."""
    long = []
    for p in sorted(PACKAGE.rglob("*.py")):
        if len(p.read_text().splitlines()) > 500:
            doc = ast.get_docstring(ast.parse(p.read_text())) or ""
            if not any(line.startswith("Over 500 lines:") for line in doc.splitlines()):
                long.append(str(p.relative_to(ROOT)))
    assert long == []
