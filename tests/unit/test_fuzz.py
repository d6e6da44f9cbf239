"""Property-based fuzzing of the trust boundary (Hypothesis): manifests mutated from a real
one, specs, and --where expressions.

For every generated input, the real CLI (run in-process for speed, through the same `main`
entry point as the `repro` command) must: exit with a code from the documented table (never
1, an internal error), print no traceback, create, change or remove no file outside
REPRO_HOME (a sentinel tree, the bundle itself included, is compared byte for byte), and
leave a store that `repro fsck` passes. `make test` runs a bounded number of examples;
`make fuzz` runs many more (REPRO_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import cli
from orchestrator.errors import ExitCode, SpecError
from orchestrator.params import apply_overrides
from orchestrator.spec import load_spec
from orchestrator.store.query import QueryError, parse_where

EXAMPLES = int(os.environ.get("REPRO_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get(
    "REPRO_FUZZ_RANDOM"), suppress_health_check=list(HealthCheck))
DOCUMENTED = {int(c) for c in ExitCode} - {int(ExitCode.INTERNAL)}

HOSTILE_STRINGS = ["../../../../etc/passwd", "sha256:../../x", "0123456789abcdef",
                   "a" * 64, "sha256:" + "b" * 64, "running", "succeeded", "bridge", "host",
                   "[/x]", "\x1b[2J", "line\nbreak", "", " ", "\x00", "é" * 300, "%_",
                   "/dev/zero", "~", "-1", "1e309", "NaN"]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(HOSTILE_STRINGS) | st.text(
        max_size=10), inner, max_size=4)), max_leaves=12)


def paths_of(doc: Any) -> list[tuple]:
    """Every path to a value inside a JSON document (down to 50 levels)."""
    found, stack = [], [((), doc)]
    while stack:
        prefix, node = stack.pop()
        found.append(prefix)
        if len(prefix) >= 50:
            continue
        if isinstance(node, dict):
            stack.extend(((*prefix, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*prefix, i), v) for i, v in enumerate(node))
    return sorted(found, key=str)


@st.composite
def mutations(draw: Any, base: dict) -> dict:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in paths_of(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["set", "delete", "rename", "nest"]))
        if kind == "set":
            parent[path[-1]] = draw(json_value)
        elif kind == "delete":
            del parent[path[-1]]
        elif kind == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(HOSTILE_STRINGS))] = parent.pop(path[-1])
        elif kind == "nest":
            value: Any = parent[path[-1]]
            for _ in range(draw(st.sampled_from([2, 40, 5000]))):
                value = [value]
            parent[path[-1]] = value
    return doc


def tree(root: Path, skip: Path) -> dict[str, tuple]:
    """Every entry under ``root`` but ``skip``: (kind, size, sha256 or link target)."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        for name in [*dirs, *files]:
            p = Path(dirpath, name)
            if p.is_symlink():
                found[str(p)] = ("link", 0, os.readlink(p))
            elif p.is_file():
                found[str(p)] = ("file", p.stat().st_size, hashlib.sha256(
                    p.read_bytes()).hexdigest(), p.stat().st_mode)
            else:
                found[str(p)] = ("dir", 0, "", p.stat().st_mode)
    return found


def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The real `repro` entry point in this process: (exit code, stdout, stderr)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # `repro logs` writes bytes
    err = io.StringIO()
    saved_env = {k: os.environ.get(k) for k in env}
    saved_argv = sys.argv
    os.environ.update(env)
    sys.argv = ["repro", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        sys.argv = saved_argv
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out.flush()
    return code, out.buffer.getvalue().decode("utf-8", "replace"), err.getvalue()


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory) -> Path:
    """A bundle exported from a real store by the real code (no engine needed: no image
    archive), with code, input, lock, an output and logs."""
    from tests.helpers import make_repo
    from tests.unit.test_resolve import SPEC
    from tests.unit.test_trust_boundary import make_bundle

    root = tmp_path_factory.mktemp("bundle-src")
    repo = make_repo(root / "repo", {"spec.yaml": SPEC, "job/train.py": "print(1)\n",
                                     "data.bin": "0123456789"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRO_ARCHIVE_IMAGES", "0")
        folder, _ = make_bundle(repo, root)
    return folder


def check_command(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    code, out, err = run_cli(*args, env=env)
    assert code in DOCUMENTED, (args, code, err)
    assert "Traceback" not in err and "internal error" not in err, (args, err)
    if code not in (0, 8) and "--json" not in args:
        assert len(err.strip().splitlines()) >= 1
    return code, out, err


@pytest.mark.process
@FUZZ
@given(data=st.data())
def test_mutated_manifests_never_escape_crash_or_corrupt(real_bundle, data):
    base = json.loads((real_bundle / "manifest.json").read_text())
    doc = data.draw(mutations(base))
    work = Path(tempfile.mkdtemp(prefix="repro-fuzz-"))
    try:
        bundle = work / "bundle"
        shutil.copytree(real_bundle, bundle)
        try:
            text = json.dumps(doc)
        except (ValueError, RecursionError):
            text = "[" * 5000 + "]" * 5000
        (bundle / "manifest.json").write_text(text)
        (work / "sentinel").mkdir()
        (work / "sentinel" / "keep.txt").write_text("do not touch")
        os.symlink("/etc/hostname", work / "sentinel" / "link")
        home = work / "home"
        env = {"REPRO_HOME": str(home), "DOCKER_HOST": f"unix://{work}/no-engine.sock"}
        before = tree(work, home)
        code, out, _ = check_command(["import", str(bundle), "--json"], env)
        for args in (["verify", str(bundle), "--json"], ["runs", "--json"], ["runs"],
                     ["runs", "--csv"]):
            check_command(args, env)
        if code == 0:
            run_id = json.loads(out)["id"]
            for args in (["show", run_id], ["show", run_id, "--json"], ["logs", run_id],
                         ["export", run_id], ["compare", run_id, run_id]):
                check_command(args, env)
        if home.exists():
            fsck_code, _, err = check_command(["fsck"], env)
            assert fsck_code == 0, err
        assert tree(work, home) == before  # nothing outside REPRO_HOME changed
    finally:
        shutil.rmtree(work, ignore_errors=True)


SPEC_BASE = {"version": 1, "name": "fuzz", "image": {"build": "images/base"},
             "command": ["python3", "-c", "print({params.lr})"], "params": {"lr": 0.1},
             "seed": 1, "inputs": {"d": {"path": "d.bin", "sha256": "a" * 64}},
             "outputs": ["**"], "resources": {"cpus": 1, "memory": "1g", "gpus": 0},
             "env": {"A": "1"}, "secrets": ["TOKEN"], "network": "none", "timeout": "1m"}


@FUZZ
@given(data=st.data(), overrides=st.lists(st.text(max_size=20), max_size=3))
def test_mutated_specs_load_or_fail_with_a_spec_error(tmp_path_factory, data, overrides):
    import yaml

    doc = data.draw(mutations(SPEC_BASE))
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    try:
        path.write_text(yaml.safe_dump(doc) if data.draw(st.booleans())
                        else json.dumps(doc))
    except (ValueError, RecursionError, yaml.YAMLError):
        path.write_text("[" * 5000)
    try:
        apply_overrides(load_spec(path), overrides)
    except SpecError as e:
        assert str(e).startswith(str(path)) or str(e).startswith("--param"), e


_FIELDS = st.sampled_from(["params.lr", "params.none", "metrics.acc", "metrics.none",
                           "tags.t", "note", "name", "status", "created_at", "duration_s",
                           "exit_code", "sweep", "diagnosis_of"])
_VALUES = st.one_of(
    st.sampled_from(["0.1", "-1", "1e-3", "x", "failed", "2026-11-03", "true", "null",
                     "'a note'", "'%_'", "'it''s'", "''"]),
    st.integers(-5, 5).map(str), st.text(alphabet="ab%_' ", max_size=6).map(
        lambda t: "'" + t.replace("'", "''") + "'"))
_ATOMS = st.one_of(
    st.tuples(_FIELDS, st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "~"]),
              _VALUES).map(" ".join),
    st.tuples(_FIELDS, st.sampled_from(["is null", "is not null"])).map(" ".join),
    st.tuples(_FIELDS, st.lists(_VALUES, min_size=1, max_size=3)).map(
        lambda t: f"{t[0]} in ({', '.join(t[1])})"))
# expressions of the grammar, nested (most of them parse, so the compiled SQL is what is
# tested), and noise (which mostly does not)
_WHERE = st.one_of(
    st.recursive(_ATOMS, lambda inner: st.one_of(
        inner.map(lambda e: f"not {e}"), inner.map(lambda e: f"({e})"),
        st.tuples(inner, st.sampled_from([" and ", " or "]), inner).map("".join)),
        max_leaves=8),
    st.lists(st.sampled_from([
        *"abc.= ()'~<>!,-0123456789%_", "params.lr", "metrics.acc", "tags.t", "note", "name",
        "not ", " and ", " or ", " in ", " is null", "status", "created_at"]),
        max_size=40).map("".join))


@FUZZ
@given(text=_WHERE)
def test_where_expressions_compile_or_fail_with_a_query_error(tmp_path_factory, text):
    """Any text either parses to a tree that compiles to SQL the real database accepts (the
    count agrees with the rows), or is refused with a QueryError. A database error (invalid
    SQL from the compiler) is never swallowed: it fails the test."""
    store = _where_store(tmp_path_factory)
    try:
        where = parse_where(text)
    except QueryError:
        return
    rows = store.runs.query(where, None, None)
    assert store.runs.query_count(where) == len(rows)
    assert [r.id for r in store.runs.query(where, None, 5)] == [r.id for r in rows][:5]


_STORES: dict[str, Any] = {}


def _where_store(factory: Any) -> Any:
    from orchestrator.store import open_store

    if "s" not in _STORES:
        from orchestrator.record import RunStatus
        from tests.unit.test_store import record, rid

        store = open_store(factory.mktemp("where") / "h")
        for label, lr, acc, status in [("a", 0.1, 0.9, RunStatus.SUCCEEDED),
                                       ("b", 0.01, None, RunStatus.FAILED),
                                       ("c", "x", 0.5, RunStatus.RUNNING)]:
            r = record(label, name=f"n{label}")
            r.params, r.status = {"lr": lr}, status
            r.metrics = {"acc": acc} if acc is not None else {}
            store.runs.insert(r)
        store.runs.set_tags(rid("a"), {"t": "v"})
        store.runs.add_note(rid("b"), "a note")
        _STORES["s"] = store  # rows for every kind of field, so each compiled join runs
    return _STORES["s"]


@pytest.fixture(scope="module")
def team_home(tmp_path_factory, real_bundle) -> Path:
    """A store holding one real run (imported from the real bundle): the template each
    team-store row fuzz example copies."""
    home = tmp_path_factory.mktemp("team") / "home"
    code, out, err = run_cli("import", str(real_bundle), "--json",
                             env={"REPRO_HOME": str(home)})
    assert code == 0, err
    return home


@pytest.mark.process
@FUZZ
@given(data=st.data(), row_id=st.one_of(st.none(), st.sampled_from(HOSTILE_STRINGS),
                                        st.text(max_size=20)))
def test_a_members_hostile_row_never_breaks_the_teams_commands(team_home, data, row_id):
    """Issue 21: another member writes what it likes into the team store's runs table (a
    mutated record, under any id, even one naming another run or a path). Every command
    that lists or reads runs exits with a documented code, one line, no traceback; the
    honest run is still listed and shown; nothing outside REPRO_HOME changes."""
    import sqlite3

    from orchestrator.web import Api

    work = Path(tempfile.mkdtemp(prefix="repro-fuzz-row-"))
    try:
        home = work / "home"
        shutil.copytree(team_home, home)
        db = sqlite3.connect(home / "repro.db")
        honest_id, base = db.execute("SELECT id, record FROM runs").fetchone()
        doc = data.draw(mutations(json.loads(base)))
        try:
            text = json.dumps(doc)
        except (ValueError, RecursionError):
            text = "[" * 5000 + "]" * 5000
        rid = row_id if row_id is not None else hashlib.sha256(text.encode()).hexdigest()[:16]
        if rid != honest_id:
            db.execute("INSERT INTO runs (id, name, status, spec_digest, created_at, record) "
                       "VALUES (?, 'fuzz', 'succeeded', 'x', '2099-01-01T00:00:00Z', ?)",
                       (rid, text))
            db.commit()
        db.close()
        (work / "sentinel").mkdir()
        (work / "sentinel" / "keep.txt").write_text("do not touch")
        env = {"REPRO_HOME": str(home), "DOCKER_HOST": f"unix://{work}/no-engine.sock"}
        before = tree(work, home)
        code, out, err = check_command(["runs", "--json"], env)
        assert code == 0 and honest_id in [r["id"] for r in json.loads(out)], (rid, err)
        api = Api(home)  # the dashboard's list too
        with api.request():
            listed = api.runs({})
        assert honest_id in [r["id"] for r in listed["runs"]]
        for args in (["runs"], ["runs", "--csv"], ["fsck"], ["show", honest_id, "--json"],
                     ["show", rid], ["logs", rid], ["compare", honest_id, rid],
                     ["verify", rid, "--json"], ["rm", rid, "--json"]):
            check_command(args, env)
        assert tree(work, home) == before  # nothing outside REPRO_HOME changed
    finally:
        shutil.rmtree(work, ignore_errors=True)
