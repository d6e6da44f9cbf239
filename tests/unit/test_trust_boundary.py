"""The trust boundary without Docker: hostile manifests and hostile job files against the
real store (SQLite, artifact folder). Each test names the finding of issue 9 it reproduces;
the same attacks through the real engine are in tests/integration/test_trust_boundary.py."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from orchestrator.bundle import import_bundle, manifest_of, needed_artifacts
from orchestrator.errors import CannotReplay, StoreError, UsageError
from orchestrator.fsck import fsck
from orchestrator.ingest import ingest
from orchestrator.outputs import collect, final_metrics, read_logged_params, read_series
from orchestrator.record import FileRef, RunRecord, RunStatus
from orchestrator.recovery import orphans
from orchestrator.replay import Grants, _input_source, plan_replay
from orchestrator.snapshot import extract
from orchestrator.store import open_store
from tests.unit.test_resolve import do, repo

__all__ = ["repo"]


@pytest.fixture
def exported(repo, tmp_path):
    return make_bundle(repo, tmp_path)


def make_bundle(repo: Path, tmp_path: Path) -> tuple[Path, RunRecord]:
    """A real bundle made by hand (no engine): the resolved run, an output and logs."""
    res, store = do(repo, tmp_path)
    out = store.artifacts.put(b"weights").sha256
    logs = store.artifacts.put(b"epoch 1 loss 0.5\n").sha256
    record = RunRecord(id="0123456789abcdef", name="r", status=RunStatus.SUCCEEDED,
                       exit_code=0, spec={}, spec_digest=res.spec_digest,
                       resolved=res.resolved, created_at="2026-11-26T10:00:00.000Z",
                       outputs={"w.bin": FileRef(sha256=out, size=7)},
                       logs=FileRef(sha256=logs, size=17), metrics={"loss": 0.5})
    folder = tmp_path / "bundle"
    (folder / "artifacts").mkdir(parents=True)
    doc = manifest_of(record, store)
    for hex_, meta in needed_artifacts(record, store).items():
        shutil.copy(store.artifacts.local_path(hex_), folder / "artifacts" / hex_)
        doc["artifacts"][hex_] = {**meta, "bundled": True}
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder, record


def rewrite(folder: Path, change) -> Path:
    doc = json.loads((folder / "manifest.json").read_text())
    change(doc)
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder


def fresh(tmp_path: Path, name: str = "fresh"):
    return open_store(tmp_path / name)


def store_files(store) -> set[str]:
    return {str(p.relative_to(store.home)) for p in store.home.rglob("*") if p.is_file()
            and "tmp" not in p.parts}


@pytest.mark.process
def test_a_good_bundle_imports_whole_and_fsck_is_clean(exported, tmp_path):
    folder, record = exported
    store = fresh(tmp_path)
    got = import_bundle(folder, store, lambda _: None)
    assert got == record and store.runs.get(record.id) == record
    assert store.local.owner(record.id) is None and orphans(store) == []
    assert store.artifacts.has(record.outputs["w.bin"].sha256)  # outputs and logs travel too
    assert fsck(store)["ok"]
    import_bundle(folder, store, lambda _: None)  # idempotent: the identical record is fine


@pytest.mark.parametrize("field, value, where", [
    # H1: a run id is a path the next command would rmtree
    (("id",), "../../../victim", "record.id"),
    (("replay_of",), "../..", "record.replay_of"),
    # H5: record fields that become artifact paths
    (("resolved", "code", "snapshot"), "sha256:../../../../etc/passwd",
     "record.resolved.code.snapshot"),
    (("logs", "sha256"), "../../../../etc/shadow", "record.logs.sha256"),
    (("resolved", "image", "archive"), "../" * 8 + "etc/passwd", "record.resolved.image.archive"),
    (("outputs",), {"../../escape": {"sha256": "a" * 64, "size": 1}}, "record.outputs"),
    # H2: a bundle choosing its own privileges
    (("resolved", "network"), "host", "record.resolved.network"),
    (("resolved", "resources", "memory_bytes"), 0, "record.resolved.resources.memory_bytes"),
    (("resolved", "resources", "cpus"), 0, "record.resolved.resources.cpus"),
    (("resolved", "env"), {"BAD NAME": "x"}, "record.resolved.env"),
    # shapes the readers rely on
    (("environment",), {"host": [], "container": {}}, "record.environment"),
    (("verdict",), {"result": "fine"}, "record.verdict"),
    (("metrics",), {"loss": "NaN"}, "record.metrics.loss"),
])
@pytest.mark.process
def test_a_hostile_field_is_refused_before_anything_is_written(exported, tmp_path, field,
                                                               value, where):
    folder, _ = exported

    def change(doc):
        target = doc["record"]
        for key in field[:-1]:
            target = target[key]
        target[field[-1]] = value

    store = fresh(tmp_path)
    before = store_files(store)
    with pytest.raises(UsageError, match=f"manifest is invalid at {where}") as e:
        import_bundle(rewrite(folder, change), store, lambda _: None)
    assert e.value.exit_code == 2
    assert store.runs.count() == 0 and store_files(store) == before


@pytest.mark.process
def test_only_finished_runs_are_imported_and_never_owned(exported, tmp_path):
    """H1: a `running` record was inserted as owned; recovery then ingested from its id."""
    folder, _ = exported
    rewrite(folder, lambda d: d["record"].update(status="running"))
    store = fresh(tmp_path)
    with pytest.raises(UsageError, match="status is running; only finished runs"):
        import_bundle(folder, store, lambda _: None)
    assert store.runs.count() == 0


@pytest.mark.process
def test_a_bundle_cannot_take_an_existing_runs_id(exported, tmp_path):
    """M1: reusing a run's id made a replay record 'identical' against that run."""
    folder, record = exported
    store = fresh(tmp_path)
    import_bundle(folder, store, lambda _: None)
    rewrite(folder, lambda d: d["record"]["metrics"].update(loss=0.01))
    with pytest.raises(UsageError, match="already in this store with a different record"):
        import_bundle(folder, store, lambda _: None)
    assert store.runs.get(record.id).metrics == {"loss": 0.5}


@pytest.mark.process
def test_a_corrupt_artifact_writes_nothing_and_a_good_one_repairs(exported, tmp_path):
    """Staged import: nothing lands unless everything checks out. M3: re-verifying a bundle
    replaces a corrupt copy already in the store."""
    folder, record = exported
    code = record.resolved.code.snapshot.removeprefix("sha256:")
    good = (folder / "artifacts" / code).read_bytes()
    (folder / "artifacts" / code).write_bytes(good[:-1] + b"!")
    store = fresh(tmp_path)
    before = store_files(store)
    with pytest.raises(CannotReplay, match=f"artifacts/{code} \\(code\\) is corrupt"):
        import_bundle(folder, store, lambda _: None)
    assert store_files(store) == before and store.runs.count() == 0
    (folder / "artifacts" / code).write_bytes(good)
    import_bundle(folder, store, lambda _: None)
    path = store.artifacts.local_path(code)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    assert not fsck(store)["ok"]
    lines: list[str] = []
    import_bundle(folder, store, lines.append)
    assert path.read_bytes() == good and any("repaired code" in ln for ln in lines)
    assert fsck(store)["ok"]


@pytest.mark.parametrize("make", [
    lambda: "[" * 100_000 + "]" * 100_000,  # RecursionError in json, once exit 1
    lambda: json.dumps({"kind": "repro-bundle", "schema_version": 1, "record": {"spec": {
        "a": json.loads("[" * 40 + "1" + "]" * 40)}}}),  # under the parser's limit, over ours
])
def test_deep_or_huge_manifests_are_bad_input(tmp_path, make):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "manifest.json").write_text(make())
    with pytest.raises(UsageError, match="nested"):
        import_bundle(folder, fresh(tmp_path), lambda _: None)


def test_a_manifest_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr("orchestrator.bundle.MANIFEST_LIMIT", 1000)
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "manifest.json").write_text(" " * 2000)
    with pytest.raises(UsageError, match="over the limit of 1000"):
        import_bundle(folder, fresh(tmp_path), lambda _: None)
    os.unlink(folder / "manifest.json")
    os.symlink("/dev/zero", folder / "manifest.json")
    with pytest.raises(UsageError, match="symbolic link"):
        import_bundle(folder, fresh(tmp_path), lambda _: None)


def test_paths_from_records_never_leave_the_store(tmp_path):
    """H1/H5 again, at the last line of defence: the store itself refuses such names."""
    store = fresh(tmp_path)
    for bad in ("../../x", "sha256:../../etc/passwd", "a" * 63 + "/"):
        with pytest.raises(StoreError, match="not a sha256"):
            store.artifacts.local_path(bad)
    for bad in ("../..", "../../../etc", "0123456789abcdeF"):
        with pytest.raises(StoreError, match="not 16 hex digits"):
            store.work_path(bad)
        with pytest.raises(StoreError, match="not 16 hex digits"):
            store.log_path(bad)


@pytest.mark.process
def test_an_imported_run_never_reads_host_paths_its_record_names(exported, tmp_path):
    """Low: a manifest could make verify hash any host folder through an input's path."""
    folder, record = exported
    rewrite(folder, lambda d: [d["artifacts"].pop(h) for h, m in list(d["artifacts"].items())
                               if m["role"].startswith("input:")])
    store = fresh(tmp_path)
    imported = import_bundle(folder, store, lambda _: None)
    inp = imported.resolved.inputs["data"]
    assert Path(inp.path).is_file()  # the recorded host path exists here ...
    with pytest.raises(CannotReplay, match="not launched here .* give it with --input"):
        _input_source(imported, "data", store, True, None)  # ... and is not read
    assert _input_source(imported, "data", store, True, Path(inp.path)) == Path(inp.path)
    wrong = tmp_path / "wrong.bin"
    wrong.write_text("other bytes")
    with pytest.raises(CannotReplay, match="its sha256 is not the recorded"):
        _input_source(imported, "data", store, True, wrong)
    assert fsck(store)["not_carried"] == 1 and fsck(store)["ok"]


@pytest.mark.process
def test_a_bundle_replays_with_only_what_the_user_grants(exported):
    """H2: network, secrets, CPUs, memory and timeout of a foreign run are the user's."""
    _, record = exported
    r = record.resolved.model_copy(update={
        "network": "bridge", "secrets": ["AWS_SECRET_ACCESS_KEY"], "timeout_s": None,
        "resources": record.resolved.resources.model_copy(update={
            "cpus": 64.0, "memory_bytes": 512 << 30})})
    rec = record.model_copy(update={"resolved": r, "duration_s": 120.0})
    plan = plan_replay(rec, True, Grants(), host_cpus=2, host_memory=24 << 30)
    got = plan.resolved
    assert got.network == "none" and got.secrets == [] and got.timeout_s == 1200
    assert got.resources.cpus == 2 and got.resources.memory_bytes == 24 << 30
    assert got.resources.threads == r.resources.threads  # the bits depend on threads
    assert len(plan.notes) == 5 and "--allow-network" in plan.notes[0]
    granted = plan_replay(rec, True, Grants(network=True, secrets=("AWS_SECRET_ACCESS_KEY",),
                                            timeout_s=60), 2, 24 << 30).resolved
    assert granted.network == "bridge" and granted.secrets == ["AWS_SECRET_ACCESS_KEY"]
    assert granted.timeout_s == 60
    local = plan_replay(rec, False, Grants(), 2, 24 << 30)  # recorded here: as recorded
    assert local.resolved == r and local.notes == []
    # issue 21, M8: a recorded timeout longer than the default is not the run's to choose
    long = rec.model_copy(update={"resolved": r.model_copy(update={"timeout_s": 30 * 86400})})
    plan = plan_replay(long, True, Grants(), 2, 24 << 30)
    assert plan.resolved.timeout_s == 1200
    assert "timeout set to 1200 s: the run records 2.592e+06 s" in " | ".join(plan.notes)
    short = rec.model_copy(update={"resolved": r.model_copy(update={"timeout_s": 60.0})})
    assert plan_replay(short, True, Grants(), 2, 24 << 30).resolved.timeout_s == 60.0
    assert plan_replay(long, True, Grants(timeout_s=90000), 2, 24 << 30
                       ).resolved.timeout_s == 90000
    # issue 21, M8: nor how many GPUs it takes: a run asking for GPUs waits for the grant
    gpu = rec.model_copy(update={"resolved": r.model_copy(update={
        "resources": r.resources.model_copy(update={"gpus": {"count": 2, "model": "H100"}})})})
    with pytest.raises(CannotReplay, match=r"asks for 2 GPU\(s\) \(H100\).*pass --gpus 2"):
        plan_replay(gpu, True, Grants(), 2, 24 << 30)
    with pytest.raises(CannotReplay):
        plan_replay(gpu, True, Grants(gpus=1), 2, 24 << 30)
    assert plan_replay(gpu, True, Grants(gpus=2), 2, 24 << 30).resolved.resources.gpus == {
        "count": 2, "model": "H100"}
    assert plan_replay(gpu, False, Grants(), 2, 24 << 30).resolved == gpu.resolved  # ours


# -- files a job wrote (H4, M7, low) ----------------------------------------------------------

def hostile_work(tmp_path: Path, folder: str = "code") -> Path:
    """What a hostile job leaves in its working folder (``code``: the project layout;
    ``outputs``: a run recorded before it)."""
    work = tmp_path / "work"
    meta, out = work / "meta", work / folder
    meta.mkdir(parents=True)
    out.mkdir()
    os.mkfifo(meta / "metrics.jsonl")  # once: launch and every later command hung
    os.symlink("/dev/zero", meta / "params.jsonl")  # once: read until MemoryError
    (meta / "env.json").write_text("[]")  # once: AttributeError in every command
    (out / "metrics.json").write_text("[" * 5000 + "]" * 5000)  # once: RecursionError
    (out / "line\nbreak.txt").write_text("x")  # once: silently dropped
    (out / "esc\x1b[2J.txt").write_text("x")
    (out / b"latin-\xe9.bin".decode("utf-8", "surrogateescape")).write_text("x")
    os.mkfifo(out / "pipe")
    deep = out
    for _ in range(70):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("x")
    (out / "ok.txt").write_text("fine")
    return work


@pytest.mark.process
@pytest.mark.parametrize("layout", ["project", "outputs"])
def test_hostile_job_files_end_as_warnings_and_skips_never_hangs(tmp_path, exported, layout):
    _, record = exported
    work = hostile_work(tmp_path, "code" if layout == "project" else "outputs")
    store = fresh(tmp_path)
    rec = record.model_copy(deep=True)
    rec.resolved.layout = layout
    rec.status, rec.outputs, rec.logs, rec.metrics = RunStatus.SUCCEEDED, {}, None, {}
    ingest(rec, store, work, tmp_path / "no.log")
    assert rec.environment.container.packages == []
    joined = " | ".join(rec.warnings)
    assert "env.json is malformed" in joined and "params.jsonl is a symbolic link" in joined
    assert "metrics.jsonl is not a regular file" in joined
    assert "metrics.json is nested too deeply" in joined
    assert sorted(rec.outputs) == ["metrics.json", "ok.txt"]  # stored, if not as metrics
    assert rec.skipped_outputs["line\\x0abreak.txt"] == "the name contains control characters"
    assert rec.skipped_outputs["esc\\x1b[2J.txt"] == "the name contains control characters"
    assert rec.skipped_outputs["latin-\\xe9.bin"] == "the name is not valid UTF-8"
    assert rec.skipped_outputs["pipe"] == "not a regular file"
    assert any("deeper than 64" in why for why in rec.skipped_outputs.values())
    rec.model_dump_json()  # the record serialises: nothing undecodable got in


def test_output_count_and_total_caps_fail_the_run_sparse_files_are_named(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(5):
        (out / f"f{i}").write_text("x" * 10)
    with open(out / "sparse", "wb") as f:
        f.truncate(4 << 20)  # 4 MiB apparent, nothing allocated
    store = fresh(tmp_path)
    found = collect(out, ["**"], store.artifacts, count=3)
    assert len(found.stored) + len(found.skipped) == 3
    assert "more than 3 output files" in found.problems[0]
    found = collect(out, ["**"], store.artifacts, total=25)
    assert sorted(found.stored) == ["f0", "f1"]
    assert "larger than the run's total limit (25 bytes)" in found.problems[0]
    found = collect(out, ["sparse"], store.artifacts)
    assert "sparse" in found.stored and "is sparse (4194304 bytes" in found.warnings[0]


def test_helper_files_keep_names_values_and_depth_in_bounds(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "metrics.jsonl").write_text("\n".join([
        json.dumps({"name": "loss", "value": 0.5}),
        json.dumps({"name": "bad\x1b[31m", "value": 1}),
        json.dumps({"name": "x" * 300, "value": 1}),
        json.dumps({"name": "deep", "value": json.loads("[" * 10 + "]" * 10)}),
        "[" * 3000 + "]" * 3000]))
    warnings: list[str] = []
    assert read_series(meta, warnings) == [("loss", 0, 0.5)]
    assert warnings == ["metrics.jsonl: 4 line(s) without a valid name and value; ignored"]
    (meta / "params.jsonl").write_text("\n".join(json.dumps(x) for x in [
        {"name": "n_train", "value": 1000}, {"name": "layers", "value": [1, 2]},
        {"name": "arch", "value": "mlp"}]))
    warnings = []
    assert read_logged_params(meta, {}, warnings) == {"n_train": 1000, "arch": "mlp"}
    assert "log_param('layers') ignored" in warnings[0]
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"a\x07": 1.0, "acc": 0.9}))
    warnings = []
    assert final_metrics([], out / "metrics.json", warnings) == {"acc": 0.9}
    assert "control characters" in warnings[0]


@pytest.mark.process
def test_tampered_unpacked_code_is_found_by_fsck_and_never_run(exported, tmp_path):
    """M3: an edited code cache replayed the tampered code and still said IDENTICAL."""
    folder, record = exported
    store = fresh(tmp_path)
    import_bundle(folder, store, lambda _: None)
    digest = record.resolved.code.snapshot
    cached = extract(digest, store)
    train = cached / "train.py"
    original = train.read_text()
    train.chmod(0o644)
    train.write_text("print('tampered')\n")
    (cached / "extra.py").write_text("x = 1\n")
    again = extract(digest, store)  # a launch or replay would use this
    assert (again / "train.py").read_text() == original and not (again / "extra.py").exists()
    (again / "train.py").chmod(0o644)
    (again / "train.py").write_text("print('tampered again')\n")
    doc = fsck(store)
    assert not doc["ok"] and "tampered: train.py was changed" in doc["problems"][0]["problem"]
    assert not again.exists()  # removed; unpacked again on next use
    assert fsck(store)["ok"]


@pytest.mark.process
def test_a_damaged_record_is_named_and_can_be_removed(exported, tmp_path):
    folder, record = exported
    store = fresh(tmp_path)
    import_bundle(folder, store, lambda _: None)
    store.runs.db.execute("UPDATE runs SET record = json_set(record, '$.id', '../..') "
                          "WHERE id = ?", (record.id,))
    with pytest.raises(StoreError, match="stored record is damaged at id"):
        store.runs.get(record.id)
    doc = fsck(store)
    assert not doc["ok"] and doc["problems"][0]["what"] == "record"
    store.runs.remove(record.id)
    assert store.runs.count() == 0 and fsck(store)["ok"]


def test_secrets_dir_refuses_a_folder_someone_else_made(tmp_path, monkeypatch):
    from orchestrator import jobspec

    monkeypatch.setattr(jobspec, "SECRETS_ROOT", tmp_path)
    trap = tmp_path / f"repro-secrets-{os.getuid()}"
    os.symlink(tmp_path / "elsewhere", trap)
    with pytest.raises(Exception, match="not a folder of this user"):
        jobspec.write_secrets("0123456789abcdef", {"TOKEN": "value-1234"})
    os.unlink(trap)
    files = jobspec.write_secrets("0123456789abcdef", {"TOKEN": "value-1234"})
    assert files["TOKEN"].read_text() == "value-1234"
    assert stat.S_IMODE(trap.stat().st_mode) == 0o700
    jobspec.remove_secrets("0123456789abcdef")
    assert not files["TOKEN"].exists()


# -- terminal, CSV and query edges (M5, low) --------------------------------------------------

@pytest.mark.process
def test_markup_and_control_characters_in_user_data_print_as_text(exported, capsys):
    """M5: a tag value like [/x] made `repro runs` exit 1; ANSI escapes reached the terminal."""
    from orchestrator import ui, ui_run

    _, record = exported
    rec = record.model_copy(update={
        "metrics": {"[/x]": 1.0, "acc[bold]": 0.5},
        "outputs": {"esc\x1b]0;pwned\x07.txt": FileRef(sha256="a" * 64, size=1)},
        "reason": "[red]not red[/red]\x1b[2J", "status": RunStatus.FAILED,
        "stderr_tail": "Traceback:\n  boom\x1b[2J"})
    ui.render_runs([rec], {rec.id: {"team": "[/x]", "note": "\x1b[31mred"}})
    ui_run.render_record(rec, {}, tags={"k": "[/]"}, notes=[("2026-11-26T10:00:00Z", "[/x]")])
    out = capsys.readouterr().out
    assert "[/x]" in out and "[red]not red[/red]" in out and "acc[bold]" in out
    assert "\x1b]0;" not in out and "\x1b[2J" not in out and "\x1b[31m" not in out
    assert "\\x1b]0;pwned\\x07.txt" in out and "\\x1b[31mred" in out
    assert "Traceback:\n  boom\\x1b[2J" in out  # a stderr tail keeps its lines


@pytest.mark.process
def test_csv_cells_never_start_a_formula(exported, capsys):
    from orchestrator import ui

    ui.print_csv([{"name": "=cmd|' /C calc'!A0", "tags.x": "+1", "tags.y": "@SUM(A1)",
                   "metrics.loss": -0.5, "note": "-2+3"}])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "'=cmd|' /C calc'!A0,'+1,'@SUM(A1),-0.5,'-2+3"


def test_contains_is_literal_and_expressions_are_bounded(tmp_path):
    from orchestrator.store.query import QueryError, parse_where
    from tests.unit.test_store import record

    store = fresh(tmp_path)
    for label, name in (("a", "digits_mlp"), ("b", "digits"), ("c", "100%")):
        store.runs.insert(record(label, name=name.replace("%", "pct")))
    assert store.runs.query_count(parse_where("name ~ '_'")) == 1  # was: every run
    assert store.runs.query_count(parse_where("name ~ DIGITS")) == 2  # case-insensitive
    assert store.runs.query_count(parse_where("name ~ '%'")) == 0
    with pytest.raises(QueryError, match="more than 4000"):
        parse_where("name = x or " * 400 + "name = y")
    with pytest.raises(QueryError, match="more than 600 terms"):
        parse_where(" or ".join(["name = x"] * 200))
    with pytest.raises(QueryError, match="nested more than 40 deep"):
        parse_where("not " * 50 + "name = x")
    with pytest.raises(QueryError, match="nested more than 40 deep"):
        parse_where("(" * 45 + "name = x" + ")" * 45)
    assert parse_where(" and ".join(["(name = x)"] * 60)).root  # siblings are not depth


def test_a_foreign_jobs_live_output_reaches_a_terminal_inert():
    """Issue 21, L5: while a run from elsewhere replays, its output streams to the
    verifier's terminal; escape sequences (clear the screen, retitle the window) are shown
    as escapes there. One's own run streams as it is (progress bars redraw)."""
    import io

    from orchestrator import ui_live

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    job = [b"step 1\r", b"\x1b]0;pwned\x07\x1b[2J", "caf\u00e9\n".encode()[:4],
           "caf\u00e9\n".encode()[4:]]
    foreign, own = Tty(), Tty()
    for stream, inert in ((foreign, True), (own, False)):
        live = ui_live.LiveStatus(stream, inert=inert)
        for chunk in job:
            live.log(chunk)
    assert "\x1b" not in foreign.getvalue() and "\x07" not in foreign.getvalue()
    assert "pwned" in foreign.getvalue() and "caf\u00e9\n" in foreign.getvalue()
    assert "\x1b[2J" in own.getvalue() and "step 1\r" in own.getvalue()
