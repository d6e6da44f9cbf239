"""Verdicts and environment diffs are pure: tested on records, without Docker."""

import pytest

from orchestrator.errors import UsageError
from orchestrator.record import Environment, FileRef, HostFacts, RunStatus, Verdict
from orchestrator.tolerances import parse_tolerances
from orchestrator.verdicts import environment_changes, host_changes, settle, verdict
from tests.unit.test_store import record, rid


def pair(**changes):
    a = record("orig")
    a.status, a.exit_code = RunStatus.SUCCEEDED, 0
    a.outputs = {"w.npy": FileRef(sha256="a" * 64, size=10),
                 "metrics.json": FileRef(sha256="b" * 64, size=5)}
    a.metrics = {"acc": 0.9, "loss": 0.3}
    a.environment = Environment.model_validate({
        "host": {"cpu": {"model": "Xeon", "flags": ["avx", "sse"], "arch": "x86"},
                 "gpus": [], "kernel": "6.1", "docker": "20.10"},
        "container": {"os": "Debian 12", "python": "3.11.2",
                      "packages": [{"name": "numpy", "version": "1.24.2"}]}})
    b = a.model_copy(deep=True)
    b.id, b.replay_of = rid("repl"), a.id
    for k, v in changes.items():
        setattr(b, k, v)
    return a, b


def test_identical_when_every_output_digest_matches():
    a, b = pair()
    v = verdict(a, b)
    assert v.result == "identical" and v.environment == []
    assert v.outputs.identical == ["metrics.json", "w.npy"] and v.outputs.differ == []


def test_differs_names_files_both_digests_and_metric_deltas():
    a, b = pair(outputs={"w.npy": FileRef(sha256="c" * 64, size=11),
                         "metrics.json": FileRef(sha256="b" * 64, size=5)},
                metrics={"acc": 0.9000001, "loss": 0.3})
    v = verdict(a, b)
    assert v.result == "differs"
    assert v.model_dump(mode="json")["outputs"]["differ"] == [
        {"path": "w.npy", "original": {"sha256": "a" * 64, "size": 10},
         "replay": {"sha256": "c" * 64, "size": 11}}]
    acc = next(m for m in v.metrics if m.name == "acc")
    assert acc.delta == pytest.approx(1e-7) and not acc.ok


def test_within_tolerance_is_never_identical():
    a, b = pair(outputs={"w.npy": FileRef(sha256="c" * 64, size=10),
                         "metrics.json": FileRef(sha256="d" * 64, size=5)},
                metrics={"acc": 0.9000001, "loss": 0.3})
    assert verdict(a, b, {"acc": 1e-6}).result == "within-tolerance"
    assert verdict(a, b, {"acc": 1e-8}).result == "differs"
    a2, b2 = pair()
    assert verdict(a2, b2, {"acc": 1e-6}).result == "identical"  # bits equal: identical


def test_missing_output_or_changed_outcome_differs():
    a, b = pair(outputs={"w.npy": FileRef(sha256="a" * 64, size=10)})
    v = verdict(a, b, {"acc": 1.0})
    assert v.result == "differs" and v.outputs.missing == ["metrics.json"]
    a, b = pair(status=RunStatus.FAILED, exit_code=1, reason="the job exited with code 1")
    v = verdict(a, b)
    assert v.result == "differs" and v.outcome and "failed (exit 1)" in v.outcome.replay


def test_environment_changes_with_hints():
    a, b = pair()
    b.environment = Environment.model_validate({
        "host": {"cpu": {"model": "EPYC", "flags": ["avx", "avx2"], "arch": "x86"},
                 "gpus": [], "kernel": "6.1", "docker": "24.0"},
        "container": {"os": "Debian 12", "python": "3.11.2",
                      "packages": [{"name": "numpy", "version": "1.26.4"},
                                   {"name": "scipy", "version": "1.11"}]}})
    changes = {c.fact: c for c in environment_changes(a, b)}
    assert set(changes) == {"cpu.model", "cpu.flags", "runtime", "container.packages"}
    assert changes["cpu.model"].original == "Xeon" and "BLAS" in changes["cpu.model"].hint
    assert changes["cpu.model"].of_a_value and changes["cpu.model"].described == "Xeon -> EPYC"
    assert changes["cpu.flags"].added == ["avx2"] and changes["cpu.flags"].removed == ["sse"]
    pk = changes["container.packages"]
    assert pk.added == {"scipy": "1.11"} and pk.changed == {"numpy": ("1.24.2", "1.26.4")}
    assert not pk.of_a_value and pk.described == "+1 -0 ~1"
    hw = host_changes(a.environment.host, b.environment.host)
    assert [c.fact for c in hw] == ["cpu.model", "cpu.flags"]  # the runtime is not hardware


def test_gpu_driver_change_is_hardware():
    host = {"cpu": {}, "gpus": [{"name": "H100", "uuid": "u", "driver": "550", "cuda": "12.4"}],
            "gpus_assigned": ["u"]}
    newer = {"cpu": {}, "gpus": [{"name": "H100", "uuid": "v", "driver": "560", "cuda": "12.6"}],
             "gpus_assigned": ["v"]}
    assert [c.fact for c in host_changes(HostFacts.model_validate(host),
                                         HostFacts.model_validate(newer))] == [
        "gpu.driver", "gpu.cuda"]


def test_parse_tolerances():
    assert parse_tolerances(["metrics.acc=1e-6", "loss=0.01"]) == {"acc": 1e-6, "loss": 0.01}
    assert parse_tolerances(["outputs.w/w1.npy=2ulp", "outputs.b.npz=1e-5"]) == {
        "outputs.w/w1.npy@ulp": 2, "outputs.b.npz": 1e-5}
    for bad in ("acc", "metrics.acc=x", "acc=-1", "=1", "outputs.w.npy=1.5ulp", "outputs.=1",
                "outputs.w.npy=-2ulp"):
        with pytest.raises(UsageError, match="expected metrics.NAME=ABS_TOLERANCE"):
            parse_tolerances([bad])


def test_a_replay_that_compared_nothing_is_not_identical():
    """A run that wrote no files and logged no metrics once verified IDENTICAL."""
    a, b = pair(outputs={}, metrics={})
    a.outputs, a.metrics = {}, {}
    v = verdict(a, b)
    assert v.result == "nothing-compared" and v.compared == ["metrics", "outputs"]
    from orchestrator.errors import VERDICT_EXIT, ExitCode

    assert VERDICT_EXIT[v.result] == ExitCode.NOTHING_COMPARED == 11


def test_metrics_are_always_compared():
    a, b = pair(metrics={"acc": 0.9, "loss": 0.31})  # same files, another loss
    v = verdict(a, b)
    assert v.result == "differs"
    assert [m.name for m in v.metrics if not m.ok] == ["loss"]


def test_logs_are_compared_when_asked_once_normalised(tmp_path):
    from orchestrator.store import open_store
    from orchestrator.verdicts import compare_logs

    store = open_store(tmp_path / "h")
    a, b = pair()
    a.resolved = a.resolved.model_copy(update={
        "compare": ["outputs", "metrics", "logs"],
        "log_normalize": [r"took [0-9.]+ s", r"^\d{2}:\d{2}:\d{2} "]})
    text_a = "12:00:01 epoch 1 loss 0.5 took 1.25 s\n12:00:02 done\n"
    text_b = "13:40:11 epoch 1 loss 0.5 took 1.31 s\n13:40:12 done\n"
    a.logs = FileRef(sha256=store.artifacts.put(text_a.encode()).sha256, size=len(text_a))
    b.logs = FileRef(sha256=store.artifacts.put(text_b.encode()).sha256, size=len(text_b))
    logs = compare_logs(a, b, store)
    assert logs is not None and logs.identical and logs.lines == 2
    assert verdict(a, b, None, logs).result == "identical"
    text_c = "13:40:11 epoch 1 loss 0.7 took 1.31 s\n"
    b.logs = FileRef(sha256=store.artifacts.put(text_c.encode()).sha256, size=len(text_c))
    logs = compare_logs(a, b, store)
    assert logs is not None and logs.model_dump(mode="json")["first_difference"] == {
        "line": 1, "original": "epoch 1 loss 0.5 ", "replay": "epoch 1 loss 0.7 "}
    assert verdict(a, b, None, logs).result == "differs"
    only_logs = a.model_copy(update={"outputs": {}, "metrics": {}})
    assert verdict(only_logs, b.model_copy(update={"outputs": {}, "metrics": {}}), None,
                   logs).result == "differs"  # logs alone are something compared


def test_series_part_ways_at_the_first_differing_step():
    from orchestrator.verdicts import part_ways, series_divergence

    original = {"loss": [(0, 1.0), (1, 0.5), (2, 0.25)], "acc": [(0, 0.1), (1, 0.2)],
                "only_there": [(0, 1.0)]}
    replay = [("loss", 0, 1.0), ("loss", 1, 0.5), ("loss", 2, 0.2500001),
              ("acc", 0, 0.1), ("acc", 1, 0.2), ("acc", 2, 0.3)]
    parted = series_divergence(original, replay)
    assert parted["loss"].model_dump() == {"step": 2, "original": 0.25, "replay": 0.2500001,
                                           "steps": [3, 3]}
    assert parted["acc"].step == 2 and parted["acc"].original is None  # a step more
    assert "only_there" not in parted  # not logged by both
    v = Verdict(result="identical")
    part_ways(v, {"loss": [(0, 1.0)]}, [("loss", 0, 1.0)])
    assert "series" not in v.model_dump(mode="json")  # nothing parted: nothing added


def test_an_array_output_within_its_own_tolerance_in_ulps_or_absolute(tmp_path):
    import numpy as np

    w = np.linspace(0, 1, 4096, dtype=np.float32)
    near = w.copy()
    near[:12] = np.nextafter(near[:12], np.float32(2))  # 12 values, 1 ULP each
    files = {}
    for name, arr in (("a", w), ("b", near), ("c", w + np.float32(0.31))):
        np.save(tmp_path / f"{name}.npy", arr)
        files[name * 64] = tmp_path / f"{name}.npy"

    def judged(replay_sha: str, tolerance: list[str]) -> Verdict:
        a, b = pair()
        a.outputs = {"w1.npy": FileRef(sha256="a" * 64, size=1)}
        b.outputs = {"w1.npy": FileRef(sha256=replay_sha, size=1)}
        v = verdict(a, b, parse_tolerances(tolerance))
        settle(v, files.__getitem__)
        return v

    v = judged("b" * 64, ["outputs.w1.npy=1ulp"])
    assert v.result == "within-tolerance"  # never identical
    d = v.outputs.differ[0]
    assert d.content and d.content["summary"] == "12 of 4096 values differ, at most 1 ULP"
    assert d.tolerance == {"ulp": 1} and d.within_tolerance is True
    assert '"tolerance":{"ulp":1}' in v.model_dump_json()  # an int stays an int
    assert judged("b" * 64, ["outputs.w1.npy=1e-6"]).result == "within-tolerance"
    from orchestrator.verify import junit

    a, b = pair()
    b.verdict = v
    assert "<failure" not in junit(a, b)  # the output met its own tolerance
    b.verdict = judged("c" * 64, ["outputs.w1.npy=1ulp"])
    assert 'failures="1"' in junit(a, b) and "all values differ" in junit(a, b)
    far = judged("c" * 64, ["outputs.w1.npy=1ulp"])
    assert far.result == "differs" and far.outputs.differ[0].within_tolerance is False
    assert (far.outputs.differ[0].content or {})["summary"].startswith("all values differ")
    assert judged("c" * 64, ["outputs.w1.npy=0.5"]).result == "within-tolerance"
    assert judged("b" * 64, ["outputs.other.npy=9ulp"]).result == "differs"  # not its own
    assert judged("b" * 64, []).result == "differs"


def test_outputs_named_after_the_time_or_host_are_paired_by_pattern():
    f = {c: FileRef(sha256=c * 64, size=1) for c in "abcdef"}
    a, b = pair()
    a.outputs = {"outputs/2026-12-04/21-00-07/model.pkl": f["a"],
                 "runs/events.out.tfevents.1700000000.3f2a9b1c4d5e": f["b"],
                 "ckpt_1.npy": f["c"], "ckpt_2.npy": f["d"]}
    b.outputs = {"outputs/2026-12-05/09-30-00/model.pkl": f["a"],  # same bytes, renamed
                 "runs/events.out.tfevents.1700000900.repro": f["e"],  # renamed, bytes moved
                 "ckpt_3.npy": f["c"]}  # two candidates on one side: never guessed
    v = verdict(a, b)
    outs = v.outputs
    assert [r.model_dump() for r in outs.renamed] == [
        {"original": "outputs/2026-12-04/21-00-07/model.pkl",
         "replay": "outputs/2026-12-05/09-30-00/model.pkl"}]
    assert [(d.path, d.renamed) for d in outs.differ] == [
        ("runs/events.out.tfevents.1700000000.3f2a9b1c4d5e",
         "runs/events.out.tfevents.1700000900.repro")]
    assert outs.missing == ["ckpt_1.npy", "ckpt_2.npy"] and outs.extra == ["ckpt_3.npy"]
    assert v.result == "differs"
    b.outputs = {"outputs/2026-12-05/09-30-00/model.pkl": f["a"],
                 "runs/events.out.tfevents.1700000900.repro": f["b"],
                 "ckpt_1.npy": f["c"], "ckpt_2.npy": f["d"]}
    v = verdict(a, b)
    assert v.result == "identical" and len(v.outputs.renamed) == 2
    again = Verdict.model_validate_json(v.model_dump_json())  # as stored, and read back
    assert again == v and again.model_dump_json() == v.model_dump_json()
