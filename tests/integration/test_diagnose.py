"""`repro diagnose` against the real daemon: each example's cause is named."""

from __future__ import annotations

import json

import pytest

from tests.helpers import repro
from tests.integration.conftest import launch_json

pytestmark = pytest.mark.integration


def diagnose(proj, run_id: str, *args: str) -> dict:
    p = repro("diagnose", run_id, "--json", *args, cwd=proj, timeout=600)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    return json.loads(p.stdout)


def finding(doc: dict, subject: str) -> dict:
    return next(f for f in doc["findings"] if f["subject"] == subject)


def causes(f: dict) -> list[str]:
    return [c["cause"] for c in f["causes"]]


def test_the_nondeterministic_example_depends_on_the_clock_and_on_entropy(proj):
    _, orig = launch_json(proj, proj / "specs" / "nondeterministic.yaml")
    doc = diagnose(proj, orig["id"])
    assert doc["result"] == "nondeterministic"
    samples = finding(doc, "samples.txt")
    assert causes(samples) == ["clock", "entropy"]
    assert samples["causes"][0]["places"] == ["line 1"]  # "drawn at <time>"
    assert "line 2" in samples["causes"][1]["places"]  # the samples
    assert "samples.txt depends on the wall clock (line 1" in samples["sentence"]
    assert "OS entropy" in samples["sentence"] and "os.urandom" in samples["sentence"]
    assert "lines differ" in samples["how_much"]
    assert set(doc["skipped"]) == {"seeds", "hashseed", "threads", "gpu"}  # strict, 1 cpu
    kinds = [r["experiment"] for r in doc["runs"]]
    assert kinds == ["plain", "plain", "controlled", "controlled", "free:clock"]
    # independent replays side by side (one core each, two here): the diagnosis took less
    # than its replays one after the other
    assert doc["cost"]["seconds"] < sum(r["seconds"] for r in doc["runs"]), doc["cost"]
    # every experiment is a replay in the store, saying what it was
    p = repro("show", doc["runs"][4]["run"], "--json", cwd=proj)
    rec = json.loads(p.stdout)
    assert rec["replay_of"] == orig["id"]
    assert any("the wall clock free" in w for w in rec["warnings"])
    assert "REPRO_FROZEN_CLOCK" not in rec["resolved"]["env"]
    pair = json.loads(repro("show", doc["runs"][2]["run"], "--json", cwd=proj).stdout)
    assert pair["resolved"]["env"]["REPRO_FROZEN_CLOCK"]
    # stored with the run: `show` (human and JSON) carries it
    shown = json.loads(repro("show", orig["id"], "--json", cwd=proj).stdout)
    assert shown["diagnoses"][-1]["findings"] == doc["findings"]
    human = repro("show", orig["id"], cwd=proj)
    assert "diagnosis of run" in human.stdout
    assert "the wall clock: these differ only when the clock runs" in human.stdout
    assert "    samples.txt: line 1  (in a plain replay: " in human.stdout  # its files under it


def test_async_sgd_depends_on_the_thread_count_and_its_series_part_ways(proj):
    _, orig = launch_json(proj, proj / "specs" / "async-sgd.yaml")
    doc = diagnose(proj, orig["id"])
    weights = finding(doc, "weights.npy")
    assert causes(weights) == ["threads"] and weights["causes"][0]["race"] is True
    assert "depends on the thread count" in weights["sentence"]
    assert "values differ" in weights["how_much"]
    assert [r["experiment"] for r in doc["runs"]][-1] == "threads-again"
    plain = json.loads(repro("show", doc["runs"][0]["run"], "--json", cwd=proj).stdout)
    assert plain["verdict"]["series"]["loss"]["step"] >= 0  # where the loss curves part
    human = repro("diagnose", orig["id"], "--replays", "1", "-q", cwd=proj)
    assert human.returncode == 0 and "NONDETERMINISTIC" in human.stdout
    assert "the thread count: threads race" in human.stdout
    assert "    weights.npy: " in human.stdout


def test_a_set_of_strings_is_diagnosed_as_hash_randomisation(proj):
    _, orig = launch_json(proj, proj / "specs" / "hashseed.yaml")
    doc = diagnose(proj, orig["id"])
    for subject in ("vocabulary.json", "embedding.txt"):
        f = finding(doc, subject)
        assert causes(f) == ["hashseed"], f
        assert "hash randomisation (PYTHONHASHSEED)" in f["sentence"]
    assert "seeds" not in doc["skipped"] and "hashseed" not in doc["skipped"]


def test_a_run_that_reproduces_has_nothing_to_diagnose(proj):
    _, orig = launch_json(proj, proj / "specs" / "hello.yaml")
    doc = diagnose(proj, orig["id"], "--replays", "2", "-j", "1")
    assert doc["result"] == "reproduces" and doc["findings"] == []
    assert [r["experiment"] for r in doc["runs"]] == ["plain", "plain"]
    # -j 1: one after the other
    # (each figure rounded to 10 ms)
    assert doc["cost"]["seconds"] >= sum(r["seconds"] for r in doc["runs"]) - 0.02, doc["cost"]
    bad = repro("diagnose", "ffffffffffff", cwd=proj)
    assert bad.returncode == 4 and "Traceback" not in bad.stderr
    replay = doc["runs"][0]["run"]
    bad = repro("diagnose", replay, cwd=proj)
    assert bad.returncode == 2 and f"run {replay} is a replay of {orig['id']}" in bad.stderr


def test_ctrl_c_during_a_diagnosis_stores_nothing_but_the_interrupted_replay(proj, home,
                                                                           engine):
    import os
    import signal
    import subprocess
    import sys

    from orchestrator.store import open_store
    from tests.integration.conftest import add_spec, wait_for_running

    spec = add_spec(proj, "slowish", """\
        command: [python3, -c, "import time; print('started', flush=True); time.sleep(3)"]
        """)
    _, orig = launch_json(proj, spec)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "diagnose", orig["id"]],
                            cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    wait_for_running(engine, home)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert f"diagnosis of run {orig['id']} interrupted" in err
    store = open_store(home)
    assert store.runs.diagnoses(orig["id"]) == []
    replays = store.runs.replays_of(orig["id"])  # the plain ones, side by side
    assert replays and all(r.status == "interrupted" for r in replays), replays
    assert engine.find({"org.repro.store": str(home.resolve())}) == []  # all stopped
    store.close()


def test_an_array_output_is_held_to_its_own_tolerance(proj):
    _, orig = launch_json(proj, proj / "specs" / "async-sgd.yaml")
    metrics = ["--tolerance", "metrics.loss=1e-3", "--tolerance", "metrics.final_loss=1e-3"]
    p = repro("verify", orig["id"], "--json", "--tolerance", "outputs.weights.npy=1e-2",
              *metrics, cwd=proj, timeout=600)
    v = json.loads(p.stdout)["verdict"]
    assert p.returncode == 0 and v["result"] == "within-tolerance", p.stderr
    weights = next(d for d in v["outputs"]["differ"] if d["path"] == "weights.npy")
    assert weights["tolerance"] == {"abs": 0.01} and weights["within_tolerance"] is True
    p = repro("verify", orig["id"], "--tolerance", "outputs.weights.npy=1ulp", *metrics,
              cwd=proj, timeout=600)
    assert p.returncode == 8 and "DIFFERS" in p.stdout
    assert "weights.npy: " in p.stdout and "(outside its tolerance 1 ULP)" in p.stdout
