"""Importance, plots, compare and sweep planning: pure functions on records."""

import random

import pytest

from orchestrator.analysis.compare import compare
from orchestrator.analysis.importance import importance, spearman
from orchestrator.analysis.plots import write_plot
from orchestrator.errors import SpecError, UsageError
from orchestrator.record import Environment, FileRef, RunStatus
from orchestrator.spec import load_spec
from orchestrator.sweep import parse_grid, plan
from tests.unit.test_spec import GOOD, write
from tests.unit.test_store import record


def runs_with(fn, n=60, seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = record(f"r{i}")
        r.status = RunStatus.SUCCEEDED
        r.params = {"lr": rng.choice([0.001, 0.01, 0.1]), "hidden": rng.choice([16, 32, 64]),
                    "opt": rng.choice(["sgd", "adam"]), "wd": rng.uniform(0, 1),
                    "fixed": 7}
        r.metrics = {"acc": fn(r.params, rng)}
        out.append(r)
    return out


def test_importance_finds_the_parameter_that_matters():
    doc = importance(runs_with(lambda p, rng: {0.001: 0.5, 0.01: 0.8, 0.1: 0.6}[p["lr"]]
                               + rng.gauss(0, 0.01)), "acc")
    names = [p["name"] for p in doc["params"]]
    assert names[0] == "lr" and doc["params"][0]["importance"] > 0.9
    assert "fixed" not in names  # constant: nothing to explain
    assert all(p["importance"] < 0.05 for p in doc["params"][1:])
    assert doc["runs"] == 60 and "ANOVA" in doc["method"] and 0 <= doc["unexplained"] < 0.1


def test_importance_categorical_and_binned_numeric_with_direction():
    doc = importance(runs_with(lambda p, rng: (0.3 if p["opt"] == "adam" else 0) + p["wd"]
                               + rng.gauss(0, 0.01)), "acc")
    by = {p["name"]: p for p in doc["params"]}
    assert by["opt"]["kind"] == "categorical" and by["opt"]["importance"] > 0.08
    assert by["wd"]["kind"] == "numeric (binned)" and by["wd"]["levels"] <= 8
    assert by["wd"]["importance"] > 0.5 and by["wd"]["spearman"] > 0.8
    assert by["lr"]["importance"] < by["opt"]["importance"] and by["lr"]["importance"] < 0.08


def test_importance_needs_runs_with_the_metric():
    with pytest.raises(UsageError, match="needs at least 3 succeeded runs"):
        importance(runs_with(lambda p, rng: 1.0, n=2), "acc")
    with pytest.raises(UsageError, match="found 0"):
        importance(runs_with(lambda p, rng: 1.0), "nope")


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


@pytest.mark.process  # matplotlib runs fc-list the first time it builds its font cache
def test_plots_are_written(tmp_path):
    doc = importance(runs_with(lambda p, rng: p["wd"] + rng.gauss(0, 0.1)), "acc")
    write_plot(doc, tmp_path / "imp.png")
    assert (tmp_path / "imp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "imp.png").stat().st_size > 10_000
    write_plot(doc, tmp_path / "imp.html")
    page = (tmp_path / "imp.html").read_text()
    assert "<svg" in page and "wd" in page and "http" not in page  # nothing from a CDN
    with pytest.raises(UsageError, match=".png or .html"):
        write_plot(doc, tmp_path / "imp.pdf")


def test_compare_marks_what_differs():
    a, b = record("a"), record("b")
    a.params, b.params = {"lr": 0.1, "h": 32}, {"lr": 0.2, "h": 32}
    a.metrics, b.metrics = {"acc": 0.9}, {"acc": 0.9}
    a.outputs = {"w": FileRef(sha256="1" * 64, size=1)}
    b.outputs = {"w": FileRef(sha256="2" * 64, size=1), "extra": FileRef(sha256="3" * 64,
                                                                          size=1)}
    a.environment = Environment.model_validate(
        {"host": {}, "container": {"packages": [{"name": "numpy", "version": "1.24"}]}})
    b.environment = Environment.model_validate(
        {"host": {}, "container": {"packages": [{"name": "numpy", "version": "1.26"}]}})
    doc = compare([a, b])
    assert doc["differs"]["params"] == ["lr"] and doc["differs"]["metrics"] == []
    assert doc["differs"]["outputs"] == ["extra", "w"]
    assert doc["outputs"]["extra"] == [None, "3" * 64]
    assert doc["packages_vs_first"][0]["changed"] == {"numpy": ["1.24", "1.26"]}


def test_sweep_plan_grid_and_random():
    grid = {"lr": [0.1, 0.01], "h": [8, 16, 32]}
    points = plan(grid)
    assert len(points) == 6 and points[0] == {"lr": 0.1, "h": 8}
    sample = plan(grid, sample=3, seed=5)
    assert len(sample) == 3 and sample == plan(grid, sample=3, seed=5)
    assert all(p in points for p in sample) and len({str(p) for p in sample}) == 3
    assert plan(grid, sample=99) == points


def test_parse_grid_uses_declared_types(tmp_path):
    loaded = load_spec(write(tmp_path, GOOD))
    assert parse_grid(loaded, ["lr=0.1,0.01", "epochs=1,2", "aug=true,false"]) == {
        "lr": [0.1, 0.01], "epochs": [1, 2], "aug": [True, False]}
    with pytest.raises(SpecError, match="params.epochs is a int"):
        parse_grid(loaded, ["epochs=1,2.5"])
    with pytest.raises(UsageError, match="expected NAME=V1,V2"):
        parse_grid(loaded, ["lr="])


def test_importance_names_the_interaction_main_effects_miss():
    # acc depends on lr and hidden only together (an XOR-like pattern): no main effect at all
    def acc(p, rng):
        return (1.0 if (p["lr"] == 0.1) == (p["hidden"] == 64) else 0.0) + rng.gauss(0, 0.01)

    runs = [r for r in runs_with(acc, n=240) if r.params["lr"] != 0.01
            and r.params["hidden"] != 32]  # a 2x2 design with ~60 repeats a cell
    doc = importance(runs, "acc")
    by = {p["name"]: p for p in doc["params"]}
    assert by["lr"]["importance"] < 0.05 and by["hidden"]["importance"] < 0.05
    top = doc["interactions"][0]
    assert top["params"] == ["hidden", "lr"] and top["replicated"] and top["importance"] > 0.9
    assert all(x["importance"] < 0.05 for x in doc["interactions"][1:])


def test_additive_effects_show_no_interaction():
    doc = importance(runs_with(lambda p, rng: {0.001: 0.5, 0.01: 0.8, 0.1: 0.6}[p["lr"]]
                               + p["hidden"] / 640 + rng.gauss(0, 0.01), n=200), "acc")
    assert doc["interactions"]  # the pair is measured, not absent
    assert all(x["importance"] < 0.05 for x in doc["interactions"])


def test_store_samples_give_the_importance_the_records_give(tmp_path, backend):
    from orchestrator.analysis.importance import importance_of
    from orchestrator.store import open_store
    from orchestrator.store.query import parse_where

    store = open_store(tmp_path / "h")
    runs = runs_with(lambda p, rng: {0.001: 0.5, 0.01: 0.8, 0.1: 0.6}[p["lr"]]
                     + rng.gauss(0, 0.01), n=80)
    for i, r in enumerate(runs):
        r.params.update(aug=i % 2 == 0, note=None if i % 3 else "x", arch="mlp" if i % 4 else "1")
    runs[0].status = RunStatus.FAILED  # not a sample
    for r in runs:
        store.runs.insert(r)
    samples, total = store.runs.importance_samples(parse_where(""), "acc")
    assert total == 79 and len(samples) == 79
    by_metric = {r.metrics["acc"]: r.params for r in runs[1:]}
    for params, value in samples:  # types come back: bool, int, float, str, None
        assert params == by_metric[value]
        assert {k: type(v) for k, v in params.items()} == \
            {k: type(v) for k, v in by_metric[value].items()}
    a, b = importance(runs, "acc"), importance_of("acc", samples)
    assert [(p["name"], p["kind"], p["levels"]) for p in a["params"]] == \
        [(p["name"], p["kind"], p["levels"]) for p in b["params"]]
    assert [p["importance"] for p in a["params"]] == pytest.approx(
        [p["importance"] for p in b["params"]], abs=1e-6)
    where = parse_where("params.hidden > 16")
    some, total = store.runs.importance_samples(where, "acc", at_most=20)
    assert total > 20 and len(some) == 20
    assert some == store.runs.importance_samples(where, "acc", at_most=20)[0]
    doc = importance_of("acc", some, total)
    assert doc["sampled_from"] == total and f"sample of 20 of the {total}" in doc["method"]
