"""Unit-level guards: hostile manifests, escaping names, owner liveness."""

import json
import os
import subprocess
import sys

import pytest

from orchestrator.bundle import import_bundle
from orchestrator.errors import SpecError, UsageError
from orchestrator.recovery import orphans
from orchestrator.spec import load_spec
from orchestrator.store import open_store
from orchestrator.store.local import owner_alive, process_identity
from tests.unit.test_spec import GOOD, write
from tests.unit.test_store import record, rid


def bundle(tmp_path, artifacts, rec=None):
    folder = tmp_path / "bundle"
    (folder / "artifacts").mkdir(parents=True)
    doc = {"schema_version": 1, "kind": "repro-bundle",
           "record": (rec or record("b")).model_dump(mode="json"), "series": {},
           "artifacts": artifacts}
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder


def test_manifest_paths_cannot_write_outside_the_store(tmp_path):
    store = open_store(tmp_path / "h")
    folder = bundle(tmp_path, {"../../../etc/evil": {"role": "code", "bundled": True}})
    with pytest.raises(UsageError, match=r"invalid at artifacts.../../../etc/evil \(the name\)"):
        import_bundle(folder, store, lambda _: None)
    assert not (tmp_path / "etc").exists() and store.runs.count() == 0


def test_manifest_of_another_kind_or_version_is_refused(tmp_path):
    folder = bundle(tmp_path, {})
    doc = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(UsageError, match="schema_version 99"):
        import_bundle(folder, open_store(tmp_path / "h"), lambda _: None)
    (folder / "manifest.json").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(UsageError, match="not a repro manifest"):
        import_bundle(folder, open_store(tmp_path / "h"), lambda _: None)
    (folder / "manifest.json").write_text(json.dumps({**doc, "record": {"id": 1}}))
    with pytest.raises(UsageError, match="manifest is invalid at record.id"):
        import_bundle(folder, open_store(tmp_path / "h"), lambda _: None)


@pytest.mark.parametrize("inputs", ["{../escape: {path: x}}", "{'a/b': {path: x}}"])
def test_input_names_cannot_escape_their_folder(tmp_path, inputs):
    with pytest.raises(SpecError, match="inputs"):
        load_spec(write(tmp_path, GOOD + f"inputs: {inputs}\n"))


@pytest.mark.process
def test_owner_liveness_survives_pid_reuse():
    me = process_identity()
    assert owner_alive(me) is True
    host, boot, pid, start = me
    assert owner_alive((host, boot, pid, str(int(start) + 1))) is False  # same pid, new process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    assert owner_alive((host, boot, int(dead), start)) is False
    assert owner_alive(("another-host", boot, pid, start)) is None


def test_orphans_are_runs_whose_owner_is_gone(tmp_path):
    store = open_store(tmp_path / "h")
    for label in ("mine", "gone", "elsewhere"):
        if label != "elsewhere":  # a run of another machine has no owner here
            store.local.own(rid(label))  # owned by this live process
        store.runs.insert(record(label))
    store.local.db.execute("UPDATE run_owners SET pid = 999999999 WHERE run_id = ?",
                           (rid("gone"),))
    assert [r.id for r in orphans(store)] == [rid("gone")]


def test_yaml_is_loaded_safely(tmp_path):
    evil = GOOD + "env: {X: !!python/object/apply:os.system ['touch /tmp/pwned-by-yaml']}\n"
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(write(tmp_path, evil))
    assert not os.path.exists("/tmp/pwned-by-yaml")
