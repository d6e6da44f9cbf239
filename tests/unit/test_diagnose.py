"""`repro diagnose`'s reasoning, on records and a fake comparison (no engine), and the
in-container controls it turns on (sitecustomize, in a real Python process, with a fake
torch standing in for a GPU build)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.causes import OUTCOME, WHOLE, Runs, analyse, describe
from orchestrator.diagnose import applicable, controlled
from orchestrator.record import Environment, FileRef, RunStatus, Verdict
from orchestrator.runtime import RUNTIME_DIR
from tests.unit.test_store import record

# what each fake run wrote: {run id: {output: [line, ...]}}
CONTENT: dict[str, dict[str, list[str]]] = {}


def run(run_id: str, resolved=None, **files: list[str]):
    r = record(run_id)
    r.status, r.exit_code = RunStatus.SUCCEEDED, 0
    r.outputs = {name: FileRef(sha256=f"{abs(hash(tuple(lines))):064x}"[-64:], size=1)
                 for name, lines in files.items()}
    CONTENT[r.id] = {n: list(v) for n, v in files.items()}
    if resolved is not None:
        r.resolved = resolved
    return r


def diff(a, b):
    """Lines that differ, per output (the real one asks content.places)."""
    out = {}
    if (a.status, a.exit_code) != (b.status, b.exit_code):
        out[OUTCOME] = frozenset({str(b.status)})
    for name in sorted(set(a.outputs) | set(b.outputs)):
        x, y = CONTENT[a.id].get(name), CONTENT[b.id].get(name)
        if x is None or y is None:
            out[name] = frozenset({"missing"})
        elif x != y:
            out[name] = frozenset(f"line {i + 1}" for i in range(max(len(x), len(y)))
                                  if (x[i:i + 1] or None) != (y[i:i + 1] or None))
    return out


def test_clock_and_entropy_are_both_named_with_where_each_shows():
    orig = run("orig", samples=["t0", "e0", "e0"], stable=["s"])
    runs = Runs(plain=[run("p1", samples=["t1", "e1", "e1"], stable=["s"]),
                       run("p2", samples=["t2", "e2", "e2"], stable=["s"])],
                controls=["clock"],
                pair=[run("c1", samples=["T", "e3", "e3"], stable=["s"]),
                      run("c2", samples=["T", "e4", "e4"], stable=["s"])],
                released={"clock": run("l", samples=["t5", "e5", "e5"], stable=["s"])})
    [f] = analyse(orig, runs, diff)["findings"]
    assert f["subject"] == "samples" and f["noise_here"]
    assert [c["cause"] for c in f["causes"]] == ["clock", "entropy"]
    assert f["causes"][0]["places"] == ["line 1"]
    assert f["causes"][1]["places"] == ["line 2", "line 3"]
    assert "the wall clock (line 1 differs only when the clock runs)" in f["sentence"]
    assert "OS entropy or a race (lines 2-3 still differ" in f["sentence"]
    assert "default_rng()" in f["sentence"] and len(f["fixes"]) == 2


def test_a_thread_race_is_told_from_a_thread_count_effect():
    orig = run("o2", w=["a"])
    race = Runs(plain=[run("p3", w=["b"]), run("p4", w=["c"])], controls=["threads"],
                pair=[run("c3", w=["one"]), run("c4", w=["one"])],
                released={"threads": run("l2", w=["d"])}, threads_again=run("a2", w=["e"]))
    [f] = analyse(orig, race, diff)["findings"]
    assert f["causes"] == [{"cause": "threads", "places": ["line 1"], "race": True}]
    assert "on the thread count" in f["sentence"] and "threads race" in f["sentence"]
    count = Runs(plain=[run("p5", w=["b"]), run("p6", w=["b"])], controls=["threads"],
                 pair=[run("c5", w=["one"]), run("c6", w=["one"])],
                 released={"threads": run("l3", w=["two"])}, threads_again=run("a3", w=["two"]))
    [f] = analyse(orig, count, diff)["findings"]
    assert f["causes"][0]["race"] is False and not f["noise_here"]
    assert "deterministic at the recorded" in f["sentence"]


def test_hash_randomisation_alone_and_an_innocent_factor_is_not_named():
    orig = run("o3", vocab=["x", "y"])
    runs = Runs(plain=[run("p7", vocab=["y", "x"]), run("p8", vocab=["x", "y"])],
                controls=["clock", "seeds", "hashseed"],
                pair=[run("c7", vocab=["x", "y"]), run("c8", vocab=["x", "y"])],
                released={"clock": run("l4", vocab=["x", "y"]),
                          "seeds": run("l5", vocab=["x", "y"]),
                          "hashseed": run("l6", vocab=["y", "x"])})
    [f] = analyse(orig, runs, diff)["findings"]
    assert [c["cause"] for c in f["causes"]] == ["hashseed"]
    assert "hash randomisation (PYTHONHASHSEED)" in f["sentence"]
    assert "identical with PYTHONHASHSEED fixed" in f["sentence"]


def test_deterministic_here_but_not_the_original_is_a_change_and_a_failure_stops_it():
    orig = run("o4", w=["old"])
    runs = Runs(plain=[run("p9", w=["new"]), run("p10", w=["new"])], controls=["clock"],
                pair=[run("c9", w=["new"]), run("c10", w=["new"])],
                released={"clock": run("l7", w=["new"])})
    [f] = analyse(orig, runs, diff)["findings"]
    assert f["causes"] == [] and not f["noise_here"] and "a change, not noise" in f["sentence"]
    assert "nothing recorded about the environment changed" in f["sentence"]
    runs.plain[0].verdict = Verdict.model_validate({"result": "differs", "environment": [
        {"fact": "cpu.flags", "hint": "SIMD paths"}, {"fact": "container.packages"}]})
    [f] = analyse(orig, runs, diff)["findings"]
    assert "what changed since: container.packages, cpu.flags" in f["sentence"]
    broken = run("p11", w=["new"])
    broken.status, broken.exit_code, broken.reason = RunStatus.FAILED, 1, "boom"
    found = analyse(orig, Runs(plain=[broken]), diff)["findings"]
    assert found[0]["subject"] == OUTCOME and "fix that first" in found[0]["sentence"]
    assert analyse(orig, Runs(plain=[run("p12", w=["old"])]), diff)["findings"] == []


def test_noise_over_the_whole_file_hides_nothing_it_cannot_see():
    orig = run("o5", blob=["x"])

    def whole(a, b):
        return {k: WHOLE for k in diff(a, b)}

    runs = Runs(plain=[run("p13", blob=["a"]), run("p14", blob=["b"])], controls=["clock"],
                pair=[run("c11", blob=["c"]), run("c12", blob=["d"])],
                released={"clock": run("l8", blob=["e"])})
    [f] = analyse(orig, runs, whole)["findings"]
    assert [c["cause"] for c in f["causes"]] == ["entropy"]  # the clock cannot be told
    assert "the file still differs" in f["sentence"]


def test_a_job_that_breaks_under_the_controls_is_said_so_not_guessed_at():
    orig = run("o6", w=["a"])
    c1, c2 = run("c13", w=["x"]), run("c14", w=["x"])
    for c in (c1, c2):
        c.status, c.exit_code, c.reason = RunStatus.TIMEOUT, None, "timed out after 60 s"
    runs = Runs(plain=[run("p15", w=["b"]), run("p16", w=["c"])], controls=["threads"],
                pair=[c1, c2], released={"threads": run("l9", w=["d"])})
    [f] = analyse(orig, runs, diff)["findings"]
    assert f["causes"] == [] and "inconclusive: the control broke the job" in \
        f["sentence"] and "timed out after 60 s" in f["sentence"]


def test_describe_places():
    assert describe(["line 1"]) == "line 1"
    assert describe(["line 2", "line 3", "line 4", "line 9"]) == "lines 2-4, 9"
    assert describe(["[0]", "[5]"]) == "2 values"
    assert describe(["*"]) == "the file"
    assert describe([".a", ".b", ".c", ".d"]) == ".a, .b, .c (+1 more)"


def test_applicable_factors_and_the_controls_they_set():
    r = record("x")
    strict = r.resolved.model_copy(update={"determinism": "strict", "env": {
        "REPRO_DETERMINISM": "strict", "PYTHONHASHSEED": "7", "OMP_NUM_THREADS": "1"}})
    r.resolved = strict
    names = [f.name for f in applicable(r)[0]]
    assert names == ["clock"] and set(applicable(r)[1]) == {"seeds", "hashseed", "threads",
                                                             "gpu"}
    loose = strict.model_copy(update={
        "determinism": "off", "env": {"REPRO_DETERMINISM": "off", "OMP_NUM_THREADS": "4"},
        "resources": strict.resources.model_copy(update={"cpus": 4.0, "threads": 4,
                                                         "gpus": {"count": 1}})})
    r.resolved = loose
    assert [f.name for f in applicable(r)[0]] == ["clock", "seeds", "hashseed", "threads", "gpu"]
    c = controlled(loose, ["clock", "seeds", "hashseed", "threads", "gpu"], 1577836800.25)
    assert c.env["REPRO_FROZEN_CLOCK"] == "1577836800.250"
    assert c.env["REPRO_FORCE_SEEDS"] == "1" and c.env["PYTHONHASHSEED"] == str(loose.seed)
    assert c.env["OMP_NUM_THREADS"] == "1" and c.resources.cpus == 1 and c.resources.threads == 1
    assert c.env["REPRO_TORCH_DETERMINISTIC"] == "1"
    assert c.env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert loose.env["OMP_NUM_THREADS"] == "4"  # the record's spec is not changed
    with pytest.raises(ValueError):
        controlled(loose, ["moon"], 0)


# -- the controls inside the job's Python (sitecustomize) ----------------------------------

FAKE_TORCH = """
calls = []
def manual_seed(s): calls.append(("manual_seed", s))
def use_deterministic_algorithms(on, warn_only=False):
    calls.append(("deterministic", on, warn_only))
class _C: benchmark = True; deterministic = False
class backends: cudnn = _C
def pool_backward():  # an op without a deterministic kernel, as torch warns of it
    import warnings
    warnings.warn("adaptive_avg_pool2d_backward_cuda does not have a deterministic "
                  "implementation, but you set 'torch.use_deterministic_algorithms(True, "
                  "warn_only=True)'")
"""


def job(tmp_path: Path, code: str, python: tuple[str, ...] = (), **env: str) -> dict:
    meta = tmp_path / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (tmp_path / "torch").mkdir(exist_ok=True)
    (tmp_path / "torch" / "__init__.py").write_text(FAKE_TORCH)
    p = subprocess.run([sys.executable, *python, "-c", textwrap.dedent(code)],
                       capture_output=True,
                       text=True, timeout=60, env={
                           **{k: v for k, v in os.environ.items() if not k.startswith("REPRO")},
                           "PYTHONPATH": f"{RUNTIME_DIR}{os.pathsep}{tmp_path}",
                           "REPRO_META_DIR": str(meta), "REPRO_SEED": "5", **env})
    assert p.returncode == 0, p.stderr
    seeded = (meta / "seeded.jsonl").read_text().splitlines() if (
        meta / "seeded.jsonl").exists() else []
    return {"out": json.loads(p.stdout), "seeded": [json.loads(x) for x in seeded]}


TORCH_STATE = """
import json, torch
print(json.dumps({"calls": torch.calls, "benchmark": torch.backends.cudnn.benchmark,
                  "deterministic": torch.backends.cudnn.deterministic}))
"""


@pytest.mark.process
def test_gpu_control_makes_torch_deterministic_without_seeding_it(tmp_path):
    got = job(tmp_path, TORCH_STATE, REPRO_DETERMINISM="off", REPRO_TORCH_DETERMINISTIC="1")
    assert got["out"]["calls"] == [["deterministic", True, True]]
    assert got["out"]["benchmark"] is False and got["out"]["deterministic"] is True
    assert {"deterministic": "torch"} in got["seeded"]


@pytest.mark.process
def test_seed_control_seeds_torch_without_switching_its_algorithms(tmp_path):
    got = job(tmp_path, TORCH_STATE, REPRO_DETERMINISM="off", REPRO_FORCE_SEEDS="1")
    assert got["out"]["calls"] == [["manual_seed", 5]] and got["out"]["benchmark"] is True
    assert {"seeded": "random"} in got["seeded"] and {"seeded": "torch"} in got["seeded"]
    nothing = job(tmp_path / "n", TORCH_STATE, REPRO_DETERMINISM="off")
    assert nothing["out"]["calls"] == []


@pytest.mark.process
def test_frozen_clock_stands_still_while_sleeps_and_waits_run(tmp_path):
    got = job(tmp_path, """
        import datetime, json, threading, time
        a = (time.time(), time.time_ns(), datetime.datetime.now().isoformat(),
             datetime.datetime.utcnow().isoformat(), datetime.date.today().isoformat(),
             time.strftime("%Y-%m-%d %H:%M:%S"), time.ctime())
        began = time.monotonic()
        time.sleep(0.05)
        waited = threading.Event().wait(0.05)
        print(json.dumps({"a": a, "b": [time.time(), datetime.datetime.now().isoformat()],
                          "took": time.monotonic() - began, "waited": waited,
                          "isinstance": isinstance(datetime.datetime(2020, 1, 1),
                                                   datetime.datetime)}))
    """, REPRO_DETERMINISM="off", REPRO_FROZEN_CLOCK="1577836800.500", TZ="UTC")
    a, b = got["out"]["a"], got["out"]["b"]
    assert a[0] == b[0] == 1577836800.5 and a[1] == 1577836800500000000
    assert a[2] == b[1] == "2020-01-01T00:00:00.500000" and a[3] == a[2]
    assert a[4] == "2020-01-01" and a[5] == "2020-01-01 00:00:00"
    assert a[6] == "Wed Jan  1 00:00:00 2020"
    assert got["out"]["took"] >= 0.1 and got["out"]["waited"] is False  # monotonic is real
    assert got["out"]["isinstance"] is True


@pytest.mark.process
def test_frozen_clock_keeps_the_datetime_types_compiled_code_checks(tmp_path):
    """pandas' compiled code checks the datetime types' identity and size: a subclass in
    their place made it raise or crash. The types stay the C types; their clocks stand."""
    got = job(tmp_path, """
        import _datetime, datetime, json
        class Stamp(datetime.datetime):
            pass
        print(json.dumps({
            "same": [datetime.datetime is _datetime.datetime, datetime.date is _datetime.date],
            "size": [datetime.datetime.__basicsize__, datetime.date.__basicsize__],
            "types": [type(datetime.datetime.now()).__module__,
                      type(Stamp.now()).__name__, type(datetime.date.today()).__name__],
            "stamp": Stamp.now(datetime.timezone.utc).isoformat(),
            "today": datetime.datetime.today().isoformat()}))
    """, REPRO_DETERMINISM="off", REPRO_FROZEN_CLOCK="1577836800.500", TZ="UTC")
    out = got["out"]
    import _datetime
    assert out["same"] == [True, True]
    assert out["size"] == [_datetime.datetime.__basicsize__, _datetime.date.__basicsize__]
    assert out["types"] == ["datetime", "Stamp", "date"]
    assert out["stamp"] == "2020-01-01T00:00:00.500000+00:00"
    assert out["today"] == "2020-01-01T00:00:00.500000"
    assert {"frozen_clock": 1577836800.5} in got["seeded"]


def test_a_control_that_crashes_the_job_is_inconclusive_once_not_agreement_per_file():
    """pandas under the old frozen clock: both controlled replays crashed (exit 139), the
    clock released ran. Said once, the files listed under it, the clock named, no blame."""
    files = {f"f{i}.csv": ["x"] for i in range(15)}
    orig = run("o7", **files)
    plain = [run("p17", **{k: ["a"] for k in files}), run("p18", **{k: ["b"] for k in files})]
    c1, c2 = run("c15"), run("c16")
    for c in (c1, c2):
        c.status, c.exit_code = RunStatus.FAILED, 139
    runs = Runs(plain=plain, controls=["clock"], pair=[c1, c2],
                released={"clock": run("l10", **{k: ["c"] for k in files})})
    doc = analyse(orig, runs, diff)
    assert all(f["causes"] == [] for f in doc["findings"])
    [cause] = doc["causes"]
    assert cause["cause"] == "inconclusive"
    assert cause["line"].startswith("inconclusive: the control broke the job (exit 139, a "
                                    "segmentation fault): with the wall clock free it ran")
    assert "agree" not in cause["line"] and "not to blame" in cause["line"]
    assert [s["subject"] for s in cause["subjects"]] == sorted(files)


def test_each_cause_is_stated_once_with_the_files_it_explains():
    orig = run("o8", a=["t0", "s"], b=["t0"], c=["k"])
    runs = Runs(plain=[run("p19", a=["t1", "s"], b=["t1"], c=["k"]),
                       run("p20", a=["t2", "s"], b=["t2"], c=["k"])], controls=["clock"],
                pair=[run("c17", a=["T", "s"], b=["T"], c=["k"]),
                      run("c18", a=["T", "s"], b=["T"], c=["k"])],
                released={"clock": run("l11", a=["t3", "s"], b=["t3"], c=["k"])})
    doc = analyse(orig, runs, diff)
    [clock] = doc["causes"]
    assert clock["cause"] == "clock" and clock["line"].startswith("the wall clock: ")
    assert clock["subjects"] == [{"subject": "a", "where": "line 1"},
                                 {"subject": "b", "where": "line 1"}]
    assert len(clock["fixes"]) == 1



def test_a_file_named_after_the_time_is_one_subject_whose_name_moves_with_the_clock(
        monkeypatch):
    """TensorBoard's events.out.tfevents.<time>.<host>: each run names it anew. Every run's
    file goes by the original's name; the clock explains the name, said once."""
    import orchestrator.causes

    name = "runs/events.out.tfevents.{}.repro"
    lines: dict[str, list[str]] = {}

    def tb(run_id: str, t: str, wall: str):
        r = run(run_id, **{name.format(t): [wall], "model.txt": ["w"]})
        for path, ref in r.outputs.items():
            lines[ref.sha256] = CONTENT[r.id][path]
        return r

    def by_line(path, x, y):
        a, b = lines[x], lines[y]
        return frozenset(f"line {i + 1}" for i in range(max(len(a), len(b)))
                         if a[i:i + 1] != b[i:i + 1])

    monkeypatch.setattr(orchestrator.causes, "places", by_line)
    orig = tb("o9", "1700000000", "1700000000.1")
    runs = Runs(plain=[tb("p21", "1700000100", "1700000100.3"),
                       tb("p22", "1700000200", "1700000200.5")], controls=["clock"],
                pair=[tb("c19", "1700000000", "1700000000.0"),
                      tb("c20", "1700000000", "1700000000.0")],
                released={"clock": tb("l12", "1700000300", "1700000300.2")})
    doc = analyse(orig, runs, orchestrator.causes.differences(str, orig))
    [f] = doc["findings"]
    assert f["subject"] == name.format("1700000000")
    assert f["causes"] == [{"cause": "clock", "places": ["name", "line 1"]}]
    [clock] = doc["causes"]
    assert clock["subjects"] == [{"subject": f["subject"], "where": "its name and line 1"}]
    assert clock["fixes"][0].startswith(
        "name the file without the time or host, or leave them out of the comparison "
        "(recorded as excluded): outputs: {exclude: ['**/events.out.tfevents.*']}")
    assert len(clock["fixes"]) == 2  # and the clock's own


@pytest.mark.process
@pytest.mark.parametrize("how", ["helper", "zero-touch"])
def test_the_helper_and_the_zero_touch_path_apply_the_same_switches(tmp_path, how):
    """repro.seed_everything() raised on CUDA where the zero-touch path warned: both now
    switch torch to warn-only deterministic algorithms and record the op's warning."""
    code = """
        import json, os
        %s
        import torch
        torch.pool_backward()
        print(json.dumps({"calls": torch.calls, "benchmark": torch.backends.cudnn.benchmark,
                          "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}))
    """ % ("import repro; repro.seed_everything()" if how == "helper" else "")
    # -S: no sitecustomize, the helper alone
    got = job(tmp_path, code, ("-S",) if how == "helper" else (), REPRO_DETERMINISM="strict")
    assert ["deterministic", True, True] in got["out"]["calls"]
    assert got["out"]["benchmark"] is False and got["out"]["cublas"] == ":4096:8"
    warned = [x["warning"] for x in got["seeded"] if "warning" in x]
    assert len(warned) == 1 and warned[0].startswith("adaptive_avg_pool2d_backward_cuda ")


def test_a_gpu_run_that_differs_names_the_ops_torch_warned_of():
    from orchestrator.record import ResourcesRef

    orig = run("o10", w=["a"])
    orig.resolved = orig.resolved.model_copy(update={"resources": ResourcesRef(
        cpus=1, threads=1, memory="1g", memory_bytes=1 << 30, gpus={"count": 1})})
    orig.environment = Environment.model_validate({"host": {}, "container": {
        "determinism_warnings": [
            "adaptive_avg_pool2d_backward_cuda does not have a deterministic implementation, "
            "but you set 'torch.use_deterministic_algorithms(True, warn_only=True)'",
            "an unrelated warning about determinism"]}})
    runs = Runs(plain=[run("p23", w=["b"]), run("p24", w=["c"])])
    doc = analyse(orig, runs, diff)
    first = doc["causes"][0]
    assert first["cause"] == "gpu-ops" and first["subjects"] == [{"subject": "w", "where": ""}]
    assert "torch ran adaptive_avg_pool2d_backward_cuda without a deterministic" in \
        first["line"]
