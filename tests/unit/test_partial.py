"""Prefix verification without an engine: which steps a prefix covers, when the job is
stopped, and the verdict on the points it ran (the real replays: tests/integration)."""

from __future__ import annotations

import json
import threading

import pytest

from orchestrator import partial
from orchestrator.errors import UsageError
from orchestrator.live import LiveMetrics
from orchestrator.outputs import read_series
from orchestrator.record import RunStatus
from orchestrator.verdicts import DIFFERS, IDENTICAL_PREFIX, prefix_verdict
from tests.unit.test_store import record

SERIES = {"loss": [(s, 1.0 / (s + 1)) for s in range(0, 1001)],
          "val_acc": [(s, s / 1000) for s in range(0, 1001, 100)]}


def original(duration: float | None = 100.0):
    rec = record("aa")
    rec.status, rec.exit_code, rec.duration_s = RunStatus.SUCCEEDED, 0, duration
    return rec


def test_a_prefix_needs_each_series_up_to_its_last_point_before_the_step():
    p = partial.plan(original(), SERIES, steps=250)
    assert p is not None and (p.through, p.of_steps) == (250, 1000)
    assert p.needs == {"loss": 250, "val_acc": 200}  # val_acc is logged every 100 steps
    assert partial.plan(original(), SERIES, steps=1000) is None  # the whole run: a full one
    assert partial.plan(original(), SERIES, steps=5000) is None


def test_a_budget_picks_the_steps_that_fit_in_it():
    p = partial.plan(original(duration=100.0), SERIES, budget_s=10.0)
    assert p is not None and p.through == 100
    assert partial.plan(original(duration=100.0), SERIES, budget_s=200.0) is None
    with pytest.raises(UsageError, match="no recorded duration"):
        partial.plan(original(duration=None), SERIES, budget_s=10.0)


def test_a_run_without_steps_or_before_its_first_step_is_a_usage_error():
    with pytest.raises(UsageError, match="recorded no metric series"):
        partial.plan(original(), {}, steps=10)
    with pytest.raises(UsageError, match="its first is step 5"):
        partial.plan(original(), {"loss": [(5, 1.0), (9, 2.0)]}, steps=3)


def test_the_job_is_stopped_once_when_every_series_reaches_its_step(tmp_path):
    p = partial.plan(original(), SERIES, steps=250)
    stopped: list[str] = []
    done = threading.Event()

    def stop(job_id: str) -> None:
        stopped.append(job_id)
        done.set()

    watch = partial.StopAt(p.ready_in(tmp_path), stop)
    watch.started("job-1")
    watch.points({"loss": (250, 0.1)})  # val_acc has not reached 200 yet
    assert not watch.fired.is_set()
    watch.points({"val_acc": (200, 0.2), "other": (9999, 1.0)})
    assert done.wait(5) and watch.fired.is_set()
    watch.points({"loss": (260, 0.1)})  # once only
    assert stopped == ["job-1"]


def test_live_steps_are_numbered_as_the_record_numbers_them(tmp_path):
    meta = tmp_path
    lines = [{"name": "loss", "value": 0.5}, {"name": "loss", "value": None},
             {"name": "loss", "value": 0.25}, {"name": "acc", "value": 1.0, "step": 40},
             {"name": "acc", "value": 2.0}]
    (meta / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    seen: list[dict] = []
    LiveMetrics({}, meta / "metrics.jsonl", lambda _: None, seen.append)._read_jsonl()
    recorded = {(n, s) for n, s, _ in read_series(meta)}
    assert seen == [{"loss": (2, 0.25), "acc": (41, 2.0)}]
    assert {("loss", 2), ("acc", 41)} <= recorded


def replayed(points: dict[str, list[tuple[int, float]]]) -> list[tuple[str, int, float]]:
    return [(n, s, v) for n, pts in points.items() for s, v in pts]


def test_identical_points_up_to_the_step_are_identical_prefix_whatever_comes_after():
    rep = record("bb")
    mine = {"loss": SERIES["loss"][:262], "val_acc": SERIES["val_acc"][:3]}
    mine["loss"][-1] = (261, 123.0)  # past the prefix: not compared
    v = prefix_verdict(original(), rep, 250, 1000, SERIES, replayed(mine), None)
    assert v.result == IDENTICAL_PREFIX and (v.through_step, v.of_steps) == (250, 1000)
    assert v.series == {} and all(m.ok for m in v.metrics)
    assert v.outputs.identical == [] and v.compared == ["metrics"]


def test_the_first_differing_step_and_a_missing_series_are_named():
    rep = record("bb")
    mine = {"loss": list(SERIES["loss"][:251])}
    mine["loss"][150] = (150, 0.5)
    v = prefix_verdict(original(), rep, 250, 1000, SERIES, replayed(mine), None)
    assert v.result == DIFFERS
    assert v.series["loss"].step == 150 and v.series["loss"].replay == 0.5
    assert v.series["val_acc"].step == 0 and v.series["val_acc"].replay is None
    mine["loss"][150] = SERIES["loss"][150]
    mine["val_acc"] = SERIES["val_acc"][:3]
    v = prefix_verdict(original(), rep, 100, 1000, SERIES, replayed(mine), None)
    assert v.result == IDENTICAL_PREFIX


def test_the_verifications_a_run_passed_are_listed_with_who_and_when():
    from orchestrator.record import Verdict
    from orchestrator.views import described_verification, verifications

    full, prefix, failed = record("f1"), record("f2"), record("f3")
    full.verdict = Verdict(result="identical", checked_at="2026-12-06T01:00:00Z")
    prefix.verdict = Verdict(result="identical-prefix", through_step=200, of_steps=10_000,
                             checked_at="2026-12-06T02:00:00Z")
    failed.verdict = Verdict(result="differs", through_step=300, of_steps=10_000)
    prefix.user = "someone@example"
    done = verifications([full, prefix, failed], {full.id: "ci"})
    assert [(v["kind"], v["by"]) for v in done] == [("full", "ci"),
                                                     ("prefix", "someone@example")]
    assert described_verification(done[1]) == (
        f"prefix through step 200 of 10,000 (identical-prefix, replay {prefix.id} by "
        "someone@example, 2026-12-06T02:00:00Z)")


def test_a_step_group_in_metrics_from_log_numbers_the_points(tmp_path):
    from orchestrator.outputs import scrape_metrics

    log = tmp_path / "log"
    log.write_text("resumed from step 200\nstep 201 loss 0.5\nstep 202 loss 0.25\n"
                   "step ² loss 0.1\n")
    pattern = {"loss": r"step (?P<step>\S+) loss (?P<value>\S+)"}
    assert scrape_metrics(log, pattern, []) == [("loss", 201, 0.5), ("loss", 202, 0.25),
                                                ("loss", 203, 0.1)]  # "²" is no step
    seen: list[dict] = []
    live = LiveMetrics(pattern, tmp_path / "none.jsonl", lambda _: None, seen.append)
    live.scrape(log.read_text())
    assert seen == [{"loss": (203, 0.1)}]


def resumable(outputs: dict[str, str]):
    from orchestrator.record import FileRef, ResumeRef

    rec = original()
    rec.resolved.layout = "project"
    rec.resolved.command = ["python3", "train.py"]
    rec.resolved.resume = ResumeRef(checkpoints="ckpt/step_{step}.npz",
                                    args=["--resume", "{path}", "--from={step}"])
    rec.outputs = {p: FileRef(sha256=h * 64, size=10) for p, h in outputs.items()}
    return rec


CKPTS = {"ckpt/step_100.npz": "a", "ckpt/step_200.npz": "b", "ckpt/step_300.npz": "c",
         "ckpt/step_x.npz": "d", "other/step_150.npz": "e", "model.npz": "f"}


def test_a_segment_runs_from_a_recorded_checkpoint_to_the_next(tmp_path):
    rec = resumable(CKPTS)
    assert partial.checkpoints(rec) == [(100, "ckpt/step_100.npz"), (200, "ckpt/step_200.npz"),
                                        (300, "ckpt/step_300.npz")]
    seg, seed = partial.plan_segment(rec, SERIES, "200")
    assert seed is None and (seg.start, seg.end, seg.of_steps) == (200, 300, 1000)
    assert seg.resumed(rec.resolved).command == ["python3", "train.py", "--resume",
                                                 "ckpt/step_200.npz", "--from=200"]
    drawn, seed = partial.plan_segment(rec, SERIES, "random")
    again, same = partial.plan_segment(rec, SERIES, f"random:{seed}")
    assert same == seed and again == drawn  # a drawn segment can be drawn again
    ready = seg.ready_in(tmp_path)
    assert not ready({"loss": 301})  # the checkpoint is not there yet
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "step_300.npz").write_bytes(b"x")
    assert not ready({"loss": 300}) and ready({"loss": 301})


@pytest.mark.parametrize("which, message", [
    ("300", "a segment from the checkpoint of each of steps 100, 200"),
    ("1e2", "a segment from the checkpoint of each of steps"),
    ("random:x", "expected random or random:SEED"),
])
def test_a_segment_that_is_not_there_is_a_usage_error(which, message):
    with pytest.raises(UsageError, match=message):
        partial.plan_segment(resumable(CKPTS), SERIES, which)


def test_a_run_without_resume_or_two_checkpoints_has_no_segment():
    plain = original()
    plain.resolved.layout = "project"
    with pytest.raises(UsageError, match="says no `resume:`"):
        partial.plan_segment(plain, SERIES, "100")
    with pytest.raises(UsageError, match="recorded 1 checkpoint"):
        partial.plan_segment(resumable({"ckpt/step_100.npz": "a"}), SERIES, "100")


def test_a_segment_verdict_compares_the_next_checkpoint_and_the_steps_between():
    from orchestrator.verdicts import IDENTICAL_SEGMENT, segment_verdict

    orig = resumable(CKPTS)
    rep = resumable({"ckpt/step_300.npz": "c", "ckpt/step_400.npz": "9"})
    mine = {"loss": SERIES["loss"][201:350], "val_acc": SERIES["val_acc"][3:4]}
    v = segment_verdict(orig, rep, 200, 300, "ckpt/step_300.npz", 1000, SERIES,
                        replayed(mine))
    assert v.result == IDENTICAL_SEGMENT and v.outputs.identical == ["ckpt/step_300.npz"]
    assert (v.from_step, v.through_step) == (200, 300) and v.series == {}
    rep.outputs["ckpt/step_300.npz"] = rep.outputs["ckpt/step_400.npz"]
    mine["loss"][10] = (211, 9.0)
    v = segment_verdict(orig, rep, 200, 300, "ckpt/step_300.npz", 1000, SERIES,
                        replayed(mine))
    assert v.result == DIFFERS and v.outputs.differ[0].path == "ckpt/step_300.npz"
    assert v.series["loss"].step == 211
    del rep.outputs["ckpt/step_300.npz"]
    v = segment_verdict(orig, rep, 200, 300, "ckpt/step_300.npz", 1000, SERIES,
                        replayed(mine))
    assert v.outputs.missing == ["ckpt/step_300.npz"]


def test_a_placed_checkpoint_is_in_the_folder_but_not_an_output(tmp_path):
    from orchestrator import workdir
    from orchestrator.errors import ReproError

    snap = tmp_path / "snap"
    (snap / "ckpt").mkdir(parents=True)
    (snap / "train.py").write_text("print(1)\n")
    (snap / "ckpt" / "step_200.npz").symlink_to("/etc/passwd")  # the snapshot's link: gone
    source = tmp_path / "artifact"
    source.write_bytes(b"weights")
    work = tmp_path / "work"
    work.mkdir()
    dest = workdir.lay_out(work, snap, {}, {"ckpt/step_200.npz": source})
    placed = dest / "ckpt" / "step_200.npz"
    assert placed.read_bytes() == b"weights" and not placed.is_symlink()
    assert workdir.Untouched(work)("ckpt/step_200.npz", placed.stat())  # not an output
    with pytest.raises(ReproError, match="not a path inside the working folder"):
        workdir.lay_out(tmp_path / "w2", snap, {}, {"../escape": source})


def test_a_hostile_records_checkpoints_outside_the_working_folder_are_none():
    from orchestrator.record import ResumeRef

    rec = resumable({"../up/step_100.npz": "a", "../up/step_200.npz": "b"})
    rec.resolved.resume = ResumeRef(checkpoints="../up/step_{step}.npz", args=["{path}"])
    assert partial.checkpoints(rec) == []
    rec.resolved.resume = ResumeRef(checkpoints="step_{step}_{step}.npz", args=["{path}"])
    assert partial.checkpoints(rec) == []  # not a pattern a spec allows: no traceback
    with pytest.raises(UsageError, match="recorded 0 checkpoint"):
        partial.plan_segment(rec, SERIES, "100")
