"""Sweeps, queries, compare, tags, notes, importance and export on a real store."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.helpers import repro

pytestmark = pytest.mark.integration


def test_grid_sweep_of_the_digits_example_then_query_compare_importance(proj, tmp_path):
    p = repro("sweep", "specs/digits-mlp.yaml", "--grid", "lr=0.05,0.3", "--grid",
              "hidden=4,16", "--param", "epochs=4", "-j", "2", "--metric", "val_accuracy",
              "--json", cwd=proj)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["points"] == 4 and out["failed"] == 0 and len(out["runs"]) == 4
    accs = [r["metrics"]["val_accuracy"] for r in out["runs"]]
    assert accs == sorted(accs, reverse=True) and out["best"] == out["runs"][0]["id"]
    assert {(r["params"]["lr"], r["params"]["hidden"]) for r in out["runs"]} == {
        (0.05, 4), (0.05, 16), (0.3, 4), (0.3, 16)}
    assert "✓" in p.stderr  # the live board
    sweep_id = out["sweep"]

    # query: every point is an ordinary run carrying the sweep id
    rows = json.loads(repro("runs", "--where", f"sweep = {sweep_id}", "--json",
                            cwd=proj).stdout)
    assert len(rows) == 4 and all(r["params.epochs"] == 4 for r in rows)
    p = repro("runs", "--where", f"sweep = {sweep_id} and params.hidden > 8 and "
              "metrics.val_accuracy >= 0", "--sort", "-metrics.val_accuracy", "--json",
              cwd=proj)
    rows = json.loads(p.stdout)
    assert [r["params.hidden"] for r in rows] == [16, 16]
    assert rows[0]["metrics.val_accuracy"] >= rows[1]["metrics.val_accuracy"]
    bad = repro("runs", "--where", "params.hidden >> 8", cwd=proj)
    assert bad.returncode == 2 and "column 16" in bad.stderr and "Traceback" not in bad.stderr

    # tags and notes: shown and queryable
    best, worst = out["runs"][0]["id"], out["runs"][-1]["id"]
    assert repro("tag", best, "stage=candidate", "owner=ana", cwd=proj).returncode == 0
    assert repro("note", worst, "too small to learn the glyphs", cwd=proj).returncode == 0
    tagged = json.loads(repro("runs", "--where", "tags.stage = candidate", "--json",
                              cwd=proj).stdout)
    assert [r["id"] for r in tagged] == [best] and tagged[0]["tags.owner"] == "ana"
    noted = json.loads(repro("runs", "--where", "note ~ glyphs", "--json", cwd=proj).stdout)
    assert [r["id"] for r in noted] == [worst]
    shown = json.loads(repro("show", worst, "--json", cwd=proj).stdout)
    assert shown["notes"][0]["text"] == "too small to learn the glyphs"

    # CSV for spreadsheets and pandas: flattened params and metrics
    table = list(csv.DictReader(io.StringIO(repro("runs", "--where", f"sweep = {sweep_id}",
                                                  "--csv", cwd=proj).stdout)))
    assert len(table) == 4 and {"params.lr", "metrics.val_accuracy", "tags.stage"} <= set(
        table[0])

    # compare: params differ, outputs differ, environment the same
    p = repro("compare", best, worst, "--json", cwd=proj)
    doc = json.loads(p.stdout)
    assert set(doc["differs"]["params"]) >= {"hidden"}
    assert "weights/w1.npy" in doc["differs"]["outputs"]
    assert "image" not in doc["differs"]["facts"] and doc["differs"]["packages"] is False
    human = repro("compare", best, worst, cwd=proj)
    assert human.returncode == 0 and "hidden" in human.stdout

    # importance over the sweep, with a plot
    plot = tmp_path / "importance.png"
    p = repro("importance", "--metric", "val_accuracy", "--where", f"sweep = {sweep_id}",
              "--plot", str(plot), "--json", cwd=proj)
    assert p.returncode == 0, p.stderr
    imp = json.loads(p.stdout)
    assert imp["runs"] == 4 and {x["name"] for x in imp["params"]} == {"lr", "hidden"}
    assert "ANOVA" in imp["method"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    html = tmp_path / "importance.html"
    assert repro("importance", "-m", "val_accuracy", "-w", f"sweep = {sweep_id}", "--plot",
                 str(html), cwd=proj).returncode == 0
    assert "<svg" in html.read_text()


def test_sweep_failures_do_not_stop_the_other_points(proj):
    spec = proj / "specs" / "flaky.yaml"
    spec.write_text("version: 1\nname: flaky\nimage: {build: ../images/base}\n"
                    "code: {path: ../examples/hello}\n"
                    "command: [python3, -c, \"import sys; sys.exit({params.code})\"]\n"
                    "params: {code: 0}\n")
    p = repro("sweep", "specs/flaky.yaml", "--grid", "code=0,3,0", "--allow-dirty",
              "--json", cwd=proj)
    assert p.returncode == 3, p.stderr
    out = json.loads(p.stdout)
    assert out["points"] == 3 and out["failed"] == 1
    assert sorted(r["status"] for r in out["runs"]) == ["failed", "succeeded", "succeeded"]


def test_interrupting_a_sweep_stops_every_running_point(proj, home, engine):
    import signal
    import subprocess
    import sys

    from orchestrator.engine import LABEL_STORE
    from tests.integration.conftest import wait_for_running

    spec = proj / "specs" / "slow.yaml"
    spec.write_text("version: 1\nname: slow\nimage: {build: ../images/base}\n"
                    "code: {path: ../examples/hello}\n"
                    "command: [python3, -c, \"import time; time.sleep({params.secs})\"]\n"
                    "params: {secs: 1}\n")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep", "specs/slow.yaml",
                             "--grid", "secs=120,121,122", "-j", "2", "--allow-dirty",
                             "--json"], cwd=proj, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_running(engine, home, count=2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert sorted(r["status"] for r in doc["runs"]) == ["error", "interrupted", "interrupted"]
    assert engine.find({LABEL_STORE: str(home.resolve())}) == []
