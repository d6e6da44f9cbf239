"""Prefix verification against the real engine: `repro verify RUN --steps N` stops the
replay's job at step N and judges the steps it ran (issue 25)."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

from tests.helpers import git, repro
from tests.integration.conftest import add_spec, launch_json
from tests.integration.test_replay import run_json

TRAIN = textwrap.dedent('''\
    """2,000 steps of a made-up training loop: a loss logged each step through the helper,
    printed too, and an accuracy every 100 steps. From DIVERGE on, os.urandom (which no seed
    fixes) nudges the loss, so no two runs agree past that step."""
    import os
    import sys
    import time

    import repro

    diverge = int(sys.argv[1])
    loss = 2.0
    for step in range(2000):
        loss = loss * 0.999 + 0.001 / (step + 1)
        if 0 <= diverge <= step:
            loss += int.from_bytes(os.urandom(2), "little") * 1e-12
        repro.log_metric("loss", loss, step=step)
        print(f"step {step} loss {loss!r}", flush=True)
        if step % 100 == 0:
            repro.log_metric("acc", 1 - loss / 2, step=step)
        time.sleep(0.003)
    with open("model.txt", "w") as f:
        f.write(repr(loss))
    ''')


def steps_project(proj, name: str, diverge: int):
    code = proj / "examples" / "steps"
    code.mkdir(exist_ok=True)
    (code / "train_steps.py").write_text(TRAIN)
    git(proj, "add", "-A")
    return add_spec(proj, name, f"""\
        code: {{path: ../examples/steps}}
        command: [python3, train_steps.py, "{diverge}"]
        seed: 0
        metrics_from_log: {{printed: 'loss (?P<value>\\S+)'}}
        compare: [outputs, metrics, logs]
        """)


def test_a_prefix_verify_runs_a_fraction_of_the_steps_and_says_the_rest_did_not_run(
        proj, tmp_path):
    spec = steps_project(proj, "steady", -1)
    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    full = run["duration_s"]
    report = tmp_path / "junit.xml"
    p, rep = run_json("verify", run["id"], "--steps", "100", "--junit", str(report), cwd=proj)
    assert p.returncode == 12, p.stderr
    v = rep["verdict"]
    assert v["result"] == "identical-prefix" and (v["through_step"], v["of_steps"]) == (100,
                                                                                        1999)
    assert {m["name"] for m in v["metrics"]} == {"loss", "acc", "printed"}
    assert v["logs"]["identical"] and "outputs" not in v  # not compared: not in the verdict
    assert rep["status"] == "interrupted" and "a prefix verify" in rep["reason"]
    assert rep["duration_s"] < full / 3, (rep["duration_s"], full)
    suite = ET.parse(report).getroot()
    assert suite.get("failures") == "0"
    assert any(c.find("skipped") is not None and c.get("name") == "outputs"
               for c in suite.iter("testcase"))
    human = repro("verify", run["id"], "--steps", "100", cwd=proj)
    assert human.returncode == 12, human.stderr
    assert "identical through step 100 of 1,999: the rest was not run" in human.stdout
    assert "outputs: not compared" in human.stdout
    # a budget: the most steps that fit, from the original's duration
    p, rep = run_json("verify", run["id"], "--budget", f"{full / 4:.1f}s", cwd=proj)
    assert p.returncode == 12, p.stderr
    assert 0 < rep["verdict"]["through_step"] < 1999
    # steps past the end: the whole run, judged whole
    p, rep = run_json("verify", run["id"], "--steps", "5000", cwd=proj)
    assert p.returncode == 0 and rep["verdict"]["result"] == "identical", p.stderr
    assert "through_step" not in rep["verdict"] and "verifying all of it" in p.stderr
    # what the run has passed, for `repro show`, the dashboard and `repro cite`
    shown = json.loads(repro("show", run["id"], "--json", cwd=proj).stdout)
    kinds = [(v["kind"], v["through_step"], v["of_steps"]) for v in shown["verified"]]
    assert kinds[:2] == [("prefix", 100, 1999), ("prefix", 100, 1999)]
    assert kinds[-1] == ("full", None, None) and len(kinds) == 4
    assert all(v["by"] and v["at"] for v in shown["verified"])


def test_a_run_that_diverges_at_step_150_fails_through_200_and_passes_through_100(proj):
    spec = steps_project(proj, "drifting", 150)
    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    p, rep = run_json("verify", run["id"], "--steps", "200", cwd=proj)
    assert p.returncode == 8, p.stderr
    v = rep["verdict"]
    assert v["result"] == "differs" and v["through_step"] == 200
    assert v["series"]["loss"]["step"] == 150 and v["series"]["printed"]["step"] == 150
    assert v["series"]["acc"]["step"] == 200  # logged every 100 steps: 100 agrees
    human = repro("verify", run["id"], "--steps", "200", cwd=proj)
    assert human.returncode == 8
    assert "differs at step 150 (metric loss:" in human.stdout
    p, rep = run_json("verify", run["id"], "--steps", "100", cwd=proj)
    assert p.returncode == 12 and rep["verdict"]["result"] == "identical-prefix", p.stderr


def test_part_of_a_run_without_steps_or_resume_is_refused_in_one_line(proj):
    p, run = launch_json(proj, proj / "specs" / "hello.yaml")
    assert p.returncode == 0, p.stderr
    for args, said in ((["--steps", "10"], "recorded no metric series"),
                       (["--segment", "100"], "says no `resume:`"),
                       (["--steps", "10", "--budget", "1m"], "give one"),
                       (["--segment", "100", "--steps", "3"], "give one")):
        p = repro("verify", run["id"], *args, cwd=proj)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert said in p.stderr
    assert json.loads(repro("runs", "--json", cwd=proj).stdout)[0]["id"] == run["id"]


def resumable_spec(proj, name: str, extra: str = ""):
    return add_spec(proj, name, f"""\
        code: {{path: ../examples/resumable}}
        command: [python3, train.py, --steps, "500", --every, "100"{extra}]
        seed: 0
        resume:
          checkpoints: checkpoints/step_{{step}}.npz
          args: [--resume, "{{path}}"]
        """)


def test_a_resumable_run_passes_a_segment_and_one_that_forgets_its_rng_fails_naming_it(proj):
    # 20 ms a step, so the 200 steps after the segment's end outlast the stop by seconds:
    # the job is stopped, not finished, whatever the machine's load
    spec = resumable_spec(proj, "resumable", ', "--pace", "0.02"')
    p, run = launch_json(proj, spec)
    assert p.returncode == 0, p.stderr
    assert {f"checkpoints/step_{s}.npz" for s in range(100, 501, 100)} <= set(run["outputs"])
    p, rep = run_json("verify", run["id"], "--segment", "200", cwd=proj)
    assert p.returncode == 13, p.stderr
    v = rep["verdict"]
    assert v["result"] == "identical-segment"
    assert (v["from_step"], v["through_step"], v["of_steps"]) == (200, 300, 500)
    assert v["outputs"]["identical"] == ["checkpoints/step_300.npz"]
    assert rep["resolved"]["command"][-2:] == ["--resume", "checkpoints/step_200.npz"]
    assert "checkpoints/step_200.npz" not in rep["outputs"]  # placed, not written by the job
    assert rep["status"] == "interrupted" and "a segment verify" in rep["reason"]
    # a random segment: its seed printed, and drawn again from it
    p, rep = run_json("verify", run["id"], "--segment", "random", cwd=proj)
    assert p.returncode == 13, p.stderr
    seed = p.stderr.split("segment drawn with seed ", 1)[1].split(":", 1)[0]
    p, again = run_json("verify", run["id"], "--segment", f"random:{seed}", cwd=proj)
    assert p.returncode == 13 and again["verdict"]["from_step"] == rep["verdict"]["from_step"]
    human = repro("verify", run["id"], "--segment", "100", cwd=proj)
    assert human.returncode == 13, human.stderr
    assert "identical from the checkpoint of step 100 to the one of step 200 (of 500)" in \
        human.stdout
    shown = json.loads(repro("show", run["id"], "--json", cwd=proj).stdout)
    assert {v["kind"] for v in shown["verified"]} == {"segment"}
    assert [c["step"] for c in shown["checkpoints"]] == [100, 200, 300, 400, 500]
    human = repro("show", run["id"], cwd=proj).stdout
    assert "checkpoints at steps 100, 200, 300, 400, 500 (repro verify --segment STEP)" in human
    # the classic mistake: the generator is not restored on resume
    forgetful = resumable_spec(proj, "forgetful", ', "--forget-rng"')
    p, run = launch_json(proj, forgetful)
    assert p.returncode == 0, p.stderr
    p, rep = run_json("verify", run["id"], "--segment", "200", cwd=proj)
    assert p.returncode == 8, p.stderr
    v = rep["verdict"]
    assert v["result"] == "differs" and v["series"]["loss"]["step"] == 201
    differ = v["outputs"]["differ"][0]
    assert differ["path"] == "checkpoints/step_300.npz"
    arrays = differ["content"]["arrays"]
    assert {"w", "velocity", "rng"} <= {n for n, d in arrays.items() if d.get("differing")}
    human = repro("verify", run["id"], "--segment", "200", cwd=proj)
    assert human.returncode == 8 and "differs at step 201 (metric loss:" in human.stdout
    assert "checkpoints/step_300.npz: " in human.stdout and "velocity: " in human.stdout
