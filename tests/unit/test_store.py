import errno
import hashlib
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import RunNotFound, StoreError
from orchestrator.record import (
    CodeRef,
    Diagnosis,
    ImageRef,
    ResolvedSpec,
    ResourcesRef,
    RunRecord,
    RunStatus,
    utc_now,
)
from orchestrator.store import open_store
from orchestrator.store.migrations import LATEST


def rid(label: str) -> str:
    """A valid run id for a test label: hex labels padded (prefixes keep working), others
    hashed."""
    if all(c in "0123456789abcdef" for c in label) and len(label) <= 16:
        return label.ljust(16, "0")
    return hashlib.sha256(label.encode()).hexdigest()[:16]


def record(run_id: str, name: str = "t") -> RunRecord:
    run_id = rid(run_id)
    resolved = ResolvedSpec(
        image=ImageRef(digest="sha256:" + "1" * 64),
        code=CodeRef(path="/x", snapshot="sha256:" + "2" * 64),
        command=["true"], seed=0,
        resources=ResourcesRef(cpus=1, threads=1, memory="1g", memory_bytes=1 << 30))
    return RunRecord(id=run_id, name=name, spec={}, spec_digest="sha256:" + "3" * 64,
                     resolved=resolved, created_at=utc_now())


def _open_and_close(home: str) -> str:
    try:
        open_store(Path(home)).close()
        return ""
    except StoreError as e:
        return str(e)


@pytest.mark.process
def test_many_processes_opening_one_new_store_at_once_all_succeed(tmp_path):
    # Switching a new database to WAL answers "database is locked" without waiting when
    # another process opens it at that moment; CI once saw this from eight launches at once.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(8) as pool:
        for attempt in range(40):
            home = str(tmp_path / f"h{attempt}")
            errors = [e for e in pool.map(_open_and_close, [home] * 8) if e]
            assert errors == [], f"attempt {attempt}: {errors[0]}"
            store = open_store(Path(home))
            assert store.runs.schema_version == LATEST
            store.close()


def test_fresh_store_is_migrated_and_in_wal_mode(tmp_path):
    store = open_store(tmp_path / "h")
    assert store.runs.schema_version == LATEST
    assert store.runs.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = [r[0] for r in store.runs.db.execute("SELECT name FROM schema_migrations")]
    assert names == ["runs-and-metric-steps", "image-archives-and-pushes",
                     "queryable-params-metrics-tags-notes-sweeps", "run-owners",
                     "run-imports", "machine-local-state-out", "recipe-images", "run-user-host",
                     "member-rights", "published", "query-statistics",
                     "queued-runs", "diagnoses", "member-tables", "member-scopes",
                     "diagnosis-experiments"]
    store.close()
    again = open_store(tmp_path / "h")  # reopening applies nothing twice
    assert again.runs.schema_version == LATEST


def test_diagnoses_are_stored_with_their_run_and_go_with_it(tmp_path, backend):
    store = open_store(tmp_path / "h")
    r = record("d1")
    store.runs.insert(r)
    assert store.runs.diagnoses(r.id) == []
    for result in ("nondeterministic", "reproduces"):
        store.runs.add_diagnosis(r.id, Diagnosis.model_validate(
            {"run": r.id, "result": result, "created_at": utc_now(),
             "findings": [{"subject": "x", "sentence": "x depends on the clock"}]}))
    got = store.runs.diagnoses(r.id)
    assert [d.result for d in got] == ["nondeterministic", "reproduces"]
    assert got[0].findings[0].sentence == "x depends on the clock"
    assert got[0].schema_version == 1
    # what another store (or a bug) hands over is checked: its shape as it becomes a model,
    # whose it is and its size as it is stored
    for bad in ({"run": r.id, "result": "fine"},
                {"run": r.id, "result": "changed", "findings": [{"sentence": "x"}]}):
        with pytest.raises(ValidationError):
            Diagnosis.model_validate({**bad, "created_at": utc_now()})
    for bad in ({"run": "ab" * 8, "result": "changed"},
                {"run": r.id, "result": "changed", "skipped": {"x": "y" * (1 << 20)}}):
        with pytest.raises(StoreError, match=f"run {r.id}: a"):
            store.runs.add_diagnosis(r.id, Diagnosis.model_validate(
                {**bad, "created_at": utc_now()}))
    # a row written around repro (a member's own SQL in a team store) is left out, and said
    with store.runs.atomic() as db:
        db.execute("INSERT INTO diagnoses (run_id, created_at, user_name, doc) "
                   "VALUES (?, ?, ?, ?)", (r.id, utc_now(), None, '{"run": "x"}'))
    assert len(store.runs.diagnoses(r.id)) == 2
    assert [why for why in store.runs.damaged.values() if "diagnosis is malformed" in why]
    store.runs.remove(r.id)
    assert store.runs.diagnoses(r.id) == []
    store.close()


def test_store_newer_than_code_is_refused(tmp_path):
    store = open_store(tmp_path / "h")
    store.runs.db.execute(f"PRAGMA user_version = {LATEST + 1}")
    store.close()
    with pytest.raises(StoreError, match="newer than this repro"):
        open_store(tmp_path / "h")


def test_insert_get_prefix_and_ambiguity(tmp_path, backend):
    store = open_store(tmp_path / "h")
    store.runs.insert(record("abc123"))
    store.runs.insert(record("abd456"))
    assert store.runs.get("abc").id == rid("abc123")
    assert store.runs.get(rid("abd456")).id == rid("abd456")
    with pytest.raises(RunNotFound, match="ambiguous"):
        store.runs.get("ab")
    with pytest.raises(RunNotFound, match="no run 'zz'"):
        store.runs.get("zz")


def test_insert_many_batches_runs_with_their_params_and_metrics(tmp_path, backend):
    from orchestrator.store.query import parse_where

    store = open_store(tmp_path / "h")
    many = [record(f"{i:016x}").model_copy(update={
        "params": {"lr": i / 1000, "opt": "adam" if i % 2 else "sgd"},
        "metrics": {"acc": i / 2500}}) for i in range(2500)]
    assert store.runs.insert_many(iter(many), batch=1000) == 2500
    assert store.runs.query_count(parse_where("params.opt = adam and metrics.acc >= 0.5")) \
        == 625
    assert store.runs.get(f"{2499:016x}").params == {"lr": 2.499, "opt": "adam"}
    # one run already there: nothing of the batch is inserted
    again = [record("feed1"), many[3]]
    with pytest.raises(StoreError, match="cannot record runs"):
        store.runs.insert_many(again)
    with pytest.raises(RunNotFound):
        store.runs.get(rid("feed1"))
    store.close()


def test_transitions_are_checked_and_compare_and_set(tmp_path, backend):
    store = open_store(tmp_path / "h")
    r = record("r1")
    store.runs.insert(r)
    r.status = RunStatus.SUCCEEDED
    with pytest.raises(StoreError, match="cannot go from pending to succeeded"):
        store.runs.save(r, previous=RunStatus.PENDING)
    r.status = RunStatus.RUNNING
    store.runs.save(r, previous=RunStatus.PENDING)
    r.status = RunStatus.FAILED
    store.runs.save(r, previous=RunStatus.RUNNING)
    r.status = RunStatus.SUCCEEDED
    with pytest.raises(StoreError):  # a second writer cannot finish it again
        store.runs.save(r, previous=RunStatus.RUNNING)
    assert store.runs.get(rid("r1")).status == RunStatus.FAILED


def test_failed_transaction_leaves_nothing(tmp_path, backend):
    store = open_store(tmp_path / "h")
    with pytest.raises(RuntimeError), store.runs.atomic() as db:
        db.execute("INSERT INTO runs (id, name, status, spec_digest, created_at, record) "
                   "VALUES ('x', 'x', 'pending', 's', 'c', '{}')")
        raise RuntimeError("boom")
    assert store.runs.count() == 0


def test_concurrent_writers_do_not_lock_out(tmp_path, backend):
    open_store(tmp_path / "h").close()
    errors = []

    def worker(i: int) -> None:
        try:
            s = open_store(tmp_path / "h")
            for j in range(20):
                s.runs.insert(record(f"w{i}-{j}"))
            s.close()
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert open_store(tmp_path / "h").runs.count() == 80


def test_metric_steps_round_trip(tmp_path, backend):
    store = open_store(tmp_path / "h")
    store.runs.insert(record("r"))
    store.runs.add_steps(rid("r"), [("loss", 0, 1.0), ("loss", 1, 0.5), ("acc", 0, 0.1)])
    assert store.runs.steps(rid("r")) == {"acc": [(0, 0.1)], "loss": [(0, 1.0), (1, 0.5)]}


def test_artifacts_are_content_addressed_and_read_only(tmp_path):
    store = open_store(tmp_path / "h")
    src = tmp_path / "big"
    data = os.urandom(3 << 20)
    src.write_bytes(data)
    put = store.artifacts.put(src)
    h = put.sha256
    assert h == hashlib.sha256(data).hexdigest() and put.size == len(data) and put.created
    path = store.artifacts.local_path(h)
    assert path == tmp_path / "h" / "artifacts" / h[:2] / h[2:]
    assert path.read_bytes() == data
    assert oct(path.stat().st_mode & 0o777) == "0o444"  # read-only, even where root writes
    again = store.artifacts.put(src)  # idempotent, and says it stored nothing new
    assert (again.sha256, again.size, again.created) == (h, len(data), False)
    assert store.artifacts.put(data).sha256 == h and store.artifacts.size(h) == len(data)
    assert list((tmp_path / "h" / "artifacts" / "tmp").iterdir()) == []
    assert store.artifacts.check(h) == "ok"


@pytest.mark.parametrize("kernel", [True, False])
def test_a_file_copied_in_is_checked_from_the_copy(tmp_path, monkeypatch, kernel):
    """copy_file (a push to a shared folder): the kernel copies, the copy is hashed; where
    the kernel cannot copy between the folders, the copy goes through the process."""
    from orchestrator.store.artifacts import ArtifactStore, DigestMismatch

    if not kernel:
        def refuse(*_a, **_k):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    src = tmp_path / "big.bin"
    data = os.urandom(3 << 20) + b"tail"
    src.write_bytes(data)
    h = hashlib.sha256(data).hexdigest()
    shared = ArtifactStore(tmp_path / "shared", shared=True)
    moved: list[int] = []
    put = shared.copy_file(src, h, "output big.bin", moved.append)
    assert (put.sha256, put.size, put.created) == (h, len(data), True)
    assert sum(moved) == len(data)
    assert shared.local_path(h).read_bytes() == data and shared.check(h) == "ok"
    assert not shared.copy_file(src, h).created  # there already: nothing copied
    # a source whose bytes are not the artifact it claims: nothing lands, no temp left
    src.write_bytes(data[:-4] + b"TAIL")
    bad = "ab" * 32
    with pytest.raises(DigestMismatch, match="its bytes hash to"):
        shared.copy_file(src, bad, "output big.bin")
    assert not shared.has(bad)
    assert list((tmp_path / "shared" / "tmp").iterdir()) == []


def test_corrupt_artifact_is_detected(tmp_path):
    store = open_store(tmp_path / "h")
    h = store.artifacts.put(b"weights").sha256
    p = store.artifacts.local_path(h)
    os.chmod(p, 0o644)
    p.write_bytes(b"weightz")
    assert store.artifacts.check(h) == "corrupt"
    p.unlink()
    assert store.artifacts.check(h) == "missing"


def test_artifact_over_limit_leaves_no_temp(tmp_path):
    store = open_store(tmp_path / "h")
    src = tmp_path / "f"
    src.write_bytes(b"x" * 100)
    with pytest.raises(StoreError, match="larger than the limit"):
        store.artifacts.put(src, limit=10)
    assert list((tmp_path / "h" / "artifacts" / "tmp").iterdir()) == []


def test_unusable_database_is_a_store_error(tmp_path):
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "repro.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="unusable") as e:
        open_store(tmp_path / "h")
    assert "repro.db" in str(e.value) and "\n" not in str(e.value)


def test_migration_from_schema_1_keeps_runs(tmp_path):
    """A store written by the first release (schema 1) is upgraded in place."""
    from orchestrator.store.migrations import MIGRATIONS

    db_path = tmp_path / "h" / "repro.db"
    db_path.parent.mkdir()
    db = sqlite3.connect(db_path)
    for statement in filter(str.strip, MIGRATIONS[0][2].split(";")):
        db.execute(statement)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
               " applied_at TEXT NOT NULL)")
    db.execute("INSERT INTO schema_migrations VALUES (1, 'runs-and-metric-steps', 'then')")
    r = record("old")
    r.params, r.metrics = {"lr": 0.1, "arch": "mlp", "aug": True}, {"acc": 0.9}
    db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
               (r.id, r.name, "succeeded", 0, r.spec_digest, r.created_at, None, None, None,
                None, r.model_dump_json()))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = open_store(tmp_path / "h")
    assert store.runs.schema_version == LATEST and store.runs.get(rid("old")).id == rid("old")
    # the migration backfilled the queryable projections from the stored JSON
    assert sorted(store.runs.db.execute("SELECT name, value_num, value_text FROM run_params")
                  ) == [("arch", None, "mlp"), ("aug", 1.0, "true"), ("lr", 0.1, "0.1")]
    assert list(store.runs.db.execute("SELECT name, value FROM run_metrics")) == [("acc", 0.9)]
    store.runs.add_image_archive("sha256:img", "ab" * 32, 10)
    assert store.runs.image_archive("sha256:img") == ("ab" * 32, 10)


def test_gc_removes_abandoned_temp_files_but_never_one_being_written(tmp_path):
    store = open_store(tmp_path / "h")
    store.artifacts.tmp.mkdir(parents=True, exist_ok=True)
    abandoned = store.artifacts.tmp / "in-crashed"  # what a killed writer leaves
    abandoned.write_bytes(b"half")
    seen_while_writing: list[list] = []

    def chunks():
        yield b"first half "
        seen_while_writing.append(store.artifacts.stale_temp_files())
        yield b"second half"

    digest = store.artifacts.put(chunks()).sha256
    assert seen_while_writing == [[abandoned]]  # the live write is not stale
    assert store.artifacts.stale_temp_files() == [abandoned]
    assert store.artifacts.local_path(digest).read_bytes() == b"first half second half"


def test_sweep_groups_count_outcomes_and_range_over_the_matching_runs(tmp_path, backend):
    from orchestrator.store.query import parse_where

    store = open_store(tmp_path / "h")
    store.runs.add_sweep("sw1", "digits", "specs/d.yaml", "{}")
    runs = [("a", "sw1", RunStatus.SUCCEEDED, 0.8, 4), ("b", "sw1", RunStatus.SUCCEEDED, 0.9, 16),
            ("c", "sw1", RunStatus.FAILED, None, 16), ("d", "sw2", RunStatus.RUNNING, None, 4),
            ("e", None, RunStatus.SUCCEEDED, 0.99, 16)]
    for i, (rid, sweep, status, acc, hidden) in enumerate(runs):
        r = record(rid)
        r.created_at = f"2026-11-2{i}T00:00:00.000Z"
        r.sweep_id, r.status, r.params = sweep, status, {"hidden": hidden}
        r.metrics = {"acc": acc} if acc is not None else {}
        store.runs.insert(r)
    total, groups = store.runs.sweep_groups(parse_where(""), "acc")
    assert total == 2
    assert groups == [
        {"sweep": "sw2", "name": None, "runs": 1, "succeeded": 0, "active": 1, "failed": 0,
         "created_at": "2026-11-23T00:00:00.000Z", "min": None, "max": None},
        {"sweep": "sw1", "name": "digits", "runs": 3, "succeeded": 2, "active": 0, "failed": 1,
         "created_at": "2026-11-20T00:00:00.000Z", "min": 0.8, "max": 0.9}]
    total, groups = store.runs.sweep_groups(parse_where("params.hidden > 8"),
                                                 "acc")
    assert total == 1 and groups[0]["runs"] == 2 and groups[0]["min"] == groups[0]["max"] == 0.9
    page = store.runs.sweep_groups(parse_where(""), None, limit=1, offset=1)
    assert page[1][0]["sweep"] == "sw1"


def test_atomic_nests_as_savepoints_so_writes_compose(tmp_path, backend):
    store = open_store(tmp_path / "h")
    r = record("nest")
    store.runs.insert(r)
    with pytest.raises(RuntimeError):
        with store.runs.atomic():
            store.runs.add_steps(r.id, [("loss", 0, 1.0)])
            with store.runs.atomic():  # a SAVEPOINT inside the outer transaction
                store.runs.set_tags(r.id, {"k": "v"})
            raise RuntimeError("the outer block fails")
    assert store.runs.steps(r.id) == {} and store.runs.tags(r.id) == {}  # all rolled back
    with store.runs.atomic():
        try:
            with store.runs.atomic():
                store.runs.set_tags(r.id, {"k": "v"})
                raise RuntimeError("only the inner block fails")
        except RuntimeError:
            pass
        store.runs.add_steps(r.id, [("loss", 0, 1.0)])
    assert store.runs.tags(r.id) == {} and store.runs.steps(r.id) == {"loss": [(0, 1.0)]}
    r.status = RunStatus.RUNNING
    store.runs.save(r, previous=RunStatus.PENDING, steps=[("acc", 0, 0.5)])
    assert store.runs.steps(r.id)["acc"] == [(0, 0.5)]  # a record and its series, together


def test_machine_local_state_moves_out_of_an_old_store(tmp_path):
    """Owners and the hash cache belong to one machine: a store from before the split keeps
    them in repro.db; opening it moves them to local.db and migration 6 drops them there."""
    home = tmp_path / "h"
    store = open_store(home)
    store.close()
    db = sqlite3.connect(home / "repro.db")
    db.execute("PRAGMA user_version = 5")
    db.execute("DELETE FROM schema_migrations WHERE version >= 6")
    db.execute("DROP TABLE recipe_images")
    db.execute("DROP TABLE published")
    db.execute("DROP TABLE diagnoses")
    db.execute("DROP INDEX runs_user")
    db.execute("DROP INDEX runs_diagnosis_of")
    db.execute("ALTER TABLE runs DROP COLUMN diagnosis_of")
    db.execute("ALTER TABLE runs DROP COLUMN user_name")
    db.execute("ALTER TABLE runs DROP COLUMN host")
    db.execute("CREATE TABLE run_owners (run_id TEXT PRIMARY KEY, host TEXT NOT NULL, "
               "boot_id TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT NOT NULL)")
    db.execute("CREATE TABLE hash_cache (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
               "mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL)")
    db.execute("INSERT INTO run_owners VALUES ('0123456789abcdef', 'box', 'b', 42, '7')")
    db.execute("INSERT INTO hash_cache VALUES ('/data/x', 1, 2, 3, ?)", ("a" * 64,))
    db.execute("INSERT INTO hash_cache VALUES ('code:/repo:.:abc', 0, 0, 0, ?)", ("b" * 64,))
    db.commit()
    db.close()
    (home / "local.db").unlink()
    store = open_store(home)
    assert store.local.owner("0123456789abcdef") == ("box", "b", 42, "7")
    assert store.local.cached_hash("/data/x", 1, 2, 3) == "a" * 64
    assert store.local.cached_hash("code:/repo:.:abc", 0, 0, 0) is None  # the old hack: gone
    tables = {r[0] for r in store.runs.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {"run_owners", "hash_cache"} & tables


def test_the_record_store_is_chosen_by_url(tmp_path, monkeypatch):
    from orchestrator.errors import UsageError

    monkeypatch.setenv("REPRO_STORE", f"sqlite:///{tmp_path}/team/records.db")
    (tmp_path / "team").mkdir()
    store = open_store(tmp_path / "h")
    assert store.runs.path == tmp_path / "team" / "records.db"
    assert (tmp_path / "h" / "local.db").exists() and not (tmp_path / "h" / "repro.db").exists()
    monkeypatch.setenv("REPRO_STORE", "mongodb://db/runs")
    with pytest.raises(UsageError, match="unknown scheme 'mongodb'; use a path or one of: "
                                         "postgres://, postgresql://, sqlite://"):
        open_store(tmp_path / "h")


def test_records_are_read_tolerantly_but_a_newer_schema_is_named(tmp_path):
    """A field a newer repro added (same schema) is left out on read; a newer schema asks
    for an upgrade; neither is a traceback (review, Appendix A 5)."""
    store = open_store(tmp_path / "h")
    r = record("newer")
    store.runs.insert(r)
    store.runs.db.execute("UPDATE runs SET record = json_set(record, '$.new_fact', 1, "
                          "'$.resolved.code.new_field', 'x') WHERE id = ?", (r.id,))
    assert store.runs.get(r.id) == r
    store.runs.db.execute("UPDATE runs SET record = json_set(record, '$.schema_version', 2) "
                          "WHERE id = ?", (r.id,))
    with pytest.raises(StoreError, match="written by a newer repro .record schema 2.; "
                                         "upgrade repro"):
        store.runs.get(r.id)


def test_the_schema_is_the_snapshot(tmp_path):
    """A migration that changes the schema changes tests/unit/schema.sql with it, on purpose
    (MLflow's schema test): `REPRO_UPDATE_SCHEMA=1 pytest -k schema` rewrites it."""
    store = open_store(tmp_path / "h")
    got = "\n".join(f"{sql};" for (sql,) in store.runs.db.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type DESC, name")) + "\n"
    snapshot = Path(__file__).with_name("schema.sql")
    if os.environ.get("REPRO_UPDATE_SCHEMA"):
        snapshot.write_text(got)
    assert got == snapshot.read_text()


def test_spec_digest_is_stable_across_releases():
    """Golden: a ResolvedSpec field added later must not move the digest of every run."""
    from orchestrator.record import InputRef, PackagesRef
    from orchestrator.resolve import spec_digest

    resolved = ResolvedSpec(
        image=ImageRef(digest="sha256:" + "1" * 64, ref="repro/base:latest"),
        code=CodeRef(path="/somewhere", snapshot="sha256:" + "2" * 64, commit="abc"),
        inputs={"data": InputRef(path="/data/x.npy", sha256="3" * 64, size=10)},
        packages=PackagesRef(lock="req.lock", sha256="4" * 64, pins={"numpy": "1.24.2"}),
        command=["python3", "train.py", "--lr=0.1"], params={"lr": 0.1, "arch": "mlp"},
        seed=1234, env={"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "1234"}, secrets=[],
        resources=ResourcesRef(cpus=1, threads=1, memory="1g", memory_bytes=1 << 30),
        timeout_s=600.0, outputs=["**"])
    assert spec_digest(resolved) == (
        "sha256:1e661cbb0d6efbfa4bf49d70ba9e37c9bb0b68e44483bd940af44a0b91c3c876")  # 0.1.0


def test_recipe_images_are_the_stores_own_and_never_imported(tmp_path, backend):
    store = open_store(tmp_path / "h")
    assert store.runs.recipe_image("sha256:" + "1" * 64) is None
    store.runs.add_recipe_image("sha256:" + "1" * 64, "sha256:" + "2" * 64)
    store.close()
    again = open_store(tmp_path / "h")  # kept with the records, for everyone sharing them
    assert again.runs.recipe_image("sha256:" + "1" * 64) == "sha256:" + "2" * 64


def test_a_shared_artifact_folder_needs_no_locks(tmp_path, monkeypatch):
    """file:// artifacts: temp files named by host and process; another host's are left
    alone until a day old, this host's dead process's are cleaned up."""
    import time as _time

    from orchestrator.store import artifacts as artifacts_of
    from orchestrator.store.artifacts import _HOST, SHARED_TEMP_MAX_AGE_S

    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("REPRO_ARTIFACTS", f"file://{shared}")
    store = artifacts_of(tmp_path / "h")
    assert store.shared and store.root == shared
    put = store.put(b"hello")
    assert store.check(put.sha256) == "ok" and (shared / put.sha256[:2]).is_dir()
    (shared / "tmp").mkdir(exist_ok=True)
    dead = shared / "tmp" / f"in-{_HOST}-999999999-abc"
    other = shared / "tmp" / "in-otherhost-12-abc"
    old = shared / "tmp" / "in-otherhost-13-abc"
    for p in (dead, other, old):
        p.write_bytes(b"x")
    past = _time.time() - SHARED_TEMP_MAX_AGE_S - 60
    os.utime(old, (past, past))
    assert sorted(p.name for p in store.stale_temp_files()) == sorted([dead.name, old.name])
    monkeypatch.setenv("REPRO_ARTIFACTS", str(tmp_path / "nope"))
    with pytest.raises(StoreError, match="no such folder; create it"):
        artifacts_of(tmp_path / "h")


@pytest.mark.process
def test_a_result_is_cited_only_from_the_team_store(tmp_path, backend):
    from orchestrator.cite import card
    from orchestrator.errors import UsageError

    store = open_store(tmp_path / "h")
    r = record("c1")
    r.status, r.metrics = RunStatus.SUCCEEDED, {"acc": 0.9}
    store.runs.insert(r)
    if backend == "sqlite":
        with pytest.raises(UsageError, match="is in the local store .*: a result is cited from "
                                             "the team's store"):
            card(store, r.id, "acc")
        return
    with pytest.raises(UsageError, match="has no metric 'f1' \\(its metrics: acc\\)"):
        card(store, r.id, "f1")
    first = card(store, r.id, "acc")
    assert first["value"] == 0.9 and first["published"]["metric"] == "acc"
    again = card(store, r.id, None)  # the first citation is the one kept
    assert again["published"] == first["published"]
    with pytest.raises(StoreError, match="is published"):
        store.runs.remove(r.id)


def test_a_run_is_foreign_unless_this_user_launched_it_here(tmp_path, monkeypatch):
    """Issue 21, H1: the grants apply to every run this user did not launch on this machine
    (a teammate's in the team store, a pull, an import), not to bundles alone. Runs a home's
    own store held before the launched set was kept count as launched here, but imported
    ones; a shared store's runs never do by default."""
    from orchestrator.replay import foreign

    home = tmp_path / "h"
    store = open_store(home)
    mine, pulled, imported = record("mine"), record("pulled"), record("imported")
    store.local.note_launched(mine.id)  # what runner.start does before it records a run
    for r in (mine, pulled):
        store.runs.insert(r)
    store.runs.import_run(imported, [], "bundle:/x", [], None)
    assert not foreign(mine, store)
    assert foreign(pulled, store) and foreign(imported, store)
    store.close()

    # an older local.db (version 1): the upgrade counts the home's own runs as launched here
    db = sqlite3.connect(home / "local.db")
    db.execute("DROP TABLE launched")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    again = open_store(home)
    assert again.local.launched_here(mine.id) and again.local.launched_here(pulled.id)
    assert not again.local.launched_here(imported.id) and foreign(imported, again)
    again.close()

    # the same records read as a shared store (as a team's would be): no upgrade trust
    monkeypatch.setenv("REPRO_STORE", f"sqlite:///{home / 'repro.db'}")
    other = open_store(tmp_path / "other-home")
    assert not other.records_here
    assert foreign(mine, other) and foreign(pulled, other)


KILLED_UNPACK = """\
import sys
from pathlib import Path
from orchestrator.snapshot import extract
from orchestrator.store import open_store
extract(sys.argv[2], open_store(Path(sys.argv[1])))
"""


@pytest.mark.process
def test_gc_removes_what_a_sigkilled_unpack_or_write_left(tmp_path):
    """Issue 21, L3: a pull or replay killed with SIGKILL (no cleanup runs) left a
    half-unpacked snapshot, or a temp file created but not yet locked, that `repro gc`
    never removed. Those of a live process stay."""
    import io
    import signal
    import subprocess
    import sys
    import tarfile
    import time

    from orchestrator.recovery import stale_files

    home = tmp_path / "h"
    store = open_store(home)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:  # many files: unpacking takes a while
        for i in range(40_000):
            info = tarfile.TarInfo(f"d{i % 100}/f{i}.py")
            info.size = 10
            tar.addfile(info, io.BytesIO(b"print(1)\n\n"))
    digest = "sha256:" + store.artifacts.put([buf.getvalue()]).sha256
    proc = subprocess.Popen([sys.executable, "-c", KILLED_UNPACK, str(home), digest])
    deadline = time.monotonic() + 60
    while not list(store.code_cache.glob(".x-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    left = list(store.code_cache.glob(".x-*"))
    assert len(left) == 1 and any(left[0].rglob("*.py")), "the unpack was not caught mid-way"
    store.artifacts.tmp.mkdir(parents=True, exist_ok=True)
    unlocked = store.artifacts.tmp / "new-killed"  # created, never locked nor renamed
    unlocked.write_bytes(b"x")
    old = time.time() - 7200
    os.utime(unlocked, (old, old))
    fresh = store.artifacts.tmp / "new-now"  # a writer between its create and its lock
    fresh.write_bytes(b"y")
    mine = store.code_cache / f".x-{os.getpid()}-live"  # a live unpack, this process's
    mine.mkdir()
    stale = stale_files(store)
    assert left[0] in stale and unlocked in stale
    assert fresh not in stale and mine not in stale


def test_a_diagnosis_experiments_are_marked_left_out_of_lists_and_found_in_old_stores(
        tmp_path):
    """Migration 16 marks the replays an earlier diagnosis ran (found in its document);
    `not_experiment` leaves them out of lists, `experiments_of` finds them."""
    from orchestrator.store.query import experiments_of, not_experiment

    home = tmp_path / "h"
    store = open_store(home)
    orig, plain, asked = record("o"), record("e"), record("r")
    plain.replay_of = asked.replay_of = orig.id
    for r in (orig, plain, asked):
        r.status = RunStatus.SUCCEEDED
        store.runs.insert(r)
    store.runs.add_diagnosis(orig.id, Diagnosis.model_validate(
        {"run": orig.id, "result": "reproduces", "created_at": utc_now(),
         "runs": [{"run": plain.id, "experiment": "plain", "label": "plain replay 1 of 1",
                   "status": "succeeded", "versus_original": "identical", "seconds": 1.0}]}))
    store.close()
    db = sqlite3.connect(home / "repro.db")  # as a store before migration 16 left it
    db.execute("PRAGMA user_version = 15")
    db.execute("DELETE FROM schema_migrations WHERE version >= 16")
    db.execute("DROP INDEX runs_diagnosis_of")
    db.execute("ALTER TABLE runs DROP COLUMN diagnosis_of")
    db.commit()
    db.close()
    store = open_store(home)
    assert store.runs.query_ids(experiments_of(orig.id)) == [plain.id]
    assert set(store.runs.query_ids(not_experiment())) == {orig.id, asked.id}
    later = record("x")
    later.replay_of, later.diagnosis_of = orig.id, orig.id
    store.runs.insert(later)
    assert sorted(store.runs.query_ids(experiments_of(orig.id))) == sorted([plain.id,
                                                                            later.id])
    assert store.runs.get(later.id).diagnosis_of == orig.id


def test_a_pulled_malformed_diagnosis_is_said_not_copied(tmp_path):
    """A diagnosis row that does not hold its shape in the other store (a member's own SQL)
    is left out of the copy and named in the transfer's warnings, never dropped unsaid."""
    from orchestrator.sync import Side, _diagnoses

    src, dst = open_store(tmp_path / "team"), open_store(tmp_path / "mine")
    r = record("e1")
    for store in (src, dst):
        store.runs.insert(r)
    src.runs.add_diagnosis(r.id, Diagnosis(run=r.id, result="reproduces",
                                           created_at=utc_now()))
    with src.runs.atomic() as db:
        db.execute("INSERT INTO diagnoses (run_id, created_at, user_name, doc) "
                   "VALUES (?, ?, ?, ?)", (r.id, utc_now(), None, '{"run": "x"}'))
    warnings: list[str] = []
    copied = _diagnoses(Side(src, "the team store", "t"), Side(dst, "this store", "m"), r,
                        warnings)
    assert copied == 1 and [d.result for d in dst.runs.diagnoses(r.id)] == ["reproduces"]
    assert len(warnings) == 1 and "a stored diagnosis is malformed" in warnings[0]
    src.close()
    dst.close()
