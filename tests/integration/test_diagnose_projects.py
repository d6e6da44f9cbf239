"""`repro diagnose` on the four drifting patterns real projects showed (the corpus's first
run): TensorBoard event files named after the time and host, Hydra's dated run folders, a
pandas job (whose compiled code broke under the old frozen clock), and a job that seeds
from the clock. Each diagnosis must name the real cause in one line, list the files under
it once, and never blame a control that broke the job on the job's code. Real engine, real
PyPI wheels, the corpus projects unchanged (only the spec a user would write by hand)."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from orchestrator.engine import LABEL_STORE
from tests.helpers import git, repro
from tests.integration.test_projects import CORPUS, clone, fresh_env, newcomer

pytestmark = pytest.mark.integration
__all__ = ["fresh_env"]  # the fixture, used by name


@pytest.fixture
def cleanup(engine):
    roots: list[Path] = []
    yield roots
    for root in roots:
        left = engine.find({LABEL_STORE: str((root / ".repro").resolve())})
        for job in left:
            engine.cleanup(job.id)
        assert left == [], "repro left containers behind"


def as_a_user_wrote_it(root: Path, command: str | None = None) -> None:
    """The spec `repro init` wrote, less what init adds against these patterns (its
    excludes, Hydra's fixed run folder): as a spec written by hand would be."""
    spec = root / "repro.yaml"
    text = spec.read_text()
    text = re.sub(r"(?m)^outputs:.*\n  exclude:.*\n", "", text)
    if command is not None:
        text = re.sub(r"(?m)^command: .*$", f"command: {command}", text)
    spec.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "my spec")


def launched(root: Path) -> dict:
    p, run = newcomer("launch", cwd=root)
    assert p.returncode == 0 and run["status"] == "succeeded", p.stderr[-2000:]
    return run


def diagnosed(root: Path, run_id: str) -> dict:
    p = repro("diagnose", run_id, "--json", cwd=root, timeout=900)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    # no control broke the job: every experiment ran as the original did
    assert all(r["status"] == "succeeded" for r in doc["runs"]), doc["runs"]
    assert not any(e.get("failed") for e in doc["experiments"]), doc["experiments"]
    return doc


def test_hydra_run_folders_named_after_the_time(tmp_path, fresh_env, cleanup):
    root = clone("hydra-sklearn", tmp_path / "hydra-sklearn")
    cleanup.append(root)
    assert newcomer("init", cwd=root)[0].returncode == 0
    as_a_user_wrote_it(root, "[python3, train.py]")  # Hydra's default: outputs/<date>/<time>
    run = launched(root)
    model = next(p for p in run["outputs"] if p.endswith("/model.pkl"))
    assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d/model\.pkl", model)
    assert run["environment"]["container"]["hostname"] == "repro"

    doc = diagnosed(root, run["id"])
    assert doc["result"] == "nondeterministic"
    [cause] = doc["causes"]  # one cause, said once
    assert cause["cause"] == "clock"
    assert cause["line"].endswith("6 of these are named after the time: Hydra's run folder, "
                                  "outputs/<date>/<time>")
    where = {s["subject"]: s["where"] for s in cause["subjects"]}
    assert where[model] == "its name only (the bytes agree)"
    assert len(where) == 6 and where[model.replace("model.pkl", "train.log")].startswith(
        "its name and line")
    assert "hydra.run.dir=outputs/run" in cause["fixes"][0]

    # a plain replay pairs the renamed files: model.pkl is the same bytes under a new name
    plain = json.loads(repro("show", doc["runs"][0]["run"], "--json", cwd=root).stdout)
    renamed = {r["original"]: r["replay"] for r in plain["verdict"]["outputs"]["renamed"]}
    assert model in renamed and renamed[model] != model

    # the experiments stay out of the run list, and go with the run
    listed = json.loads(repro("runs", "--json", cwd=root).stdout)
    assert [r["id"] for r in listed] == [run["id"]]
    every = json.loads(repro("runs", "--json", "--experiments", cwd=root).stdout)
    assert len(every) == 1 + len(doc["runs"])
    assert all(r["diagnosis_of"] == run["id"] for r in every if r["id"] != run["id"])
    p = repro("rm", run["id"], "--json", cwd=root)
    assert p.returncode == 0, p.stderr
    assert set(json.loads(p.stdout)["removed"]) == {run["id"], *(r["run"] for r in
                                                                 doc["runs"])}
    assert json.loads(repro("runs", "--json", "--experiments", cwd=root).stdout) == []


def test_tensorboard_event_files_named_after_the_time_and_host(tmp_path, fresh_env, cleanup):
    root = clone("charlm-tensorboard", tmp_path / "charlm-tensorboard")
    cleanup.append(root)
    assert newcomer("init", cwd=root)[0].returncode == 0
    as_a_user_wrote_it(root)  # the event files compared, as a spec written by hand has them
    run = launched(root)
    [events] = [p for p in run["outputs"] if "events.out.tfevents." in p]
    assert ".repro" in events  # the fixed hostname, not a random container id

    doc = diagnosed(root, run["id"])
    [cause] = doc["causes"]
    assert cause["cause"] == "clock" and cause["line"].endswith(
        "its name carries the time: TensorBoard's event files, "
        "events.out.tfevents.<time>.<host>")
    [subject] = cause["subjects"]
    assert subject["subject"] == events and subject["where"].startswith("its name and")
    assert "outputs: {exclude: ['**/events.out.tfevents.*']}" in cause["fixes"][0]


PANDAS_JOB = '''\
"""Fit a line to data/housing.csv with pandas and numpy; write a report."""
import json
import time

import numpy as np
import pandas as pd

df = pd.read_csv("data/housing.csv")
df["listed"] = pd.to_datetime("2024-01-01") + pd.to_timedelta(np.arange(len(df)), unit="D")
df["weekday"] = df["listed"].dt.dayofweek
days = (np.datetime64("2024-03-01") - df["listed"].values.astype("datetime64[D]"))
x = np.c_[np.ones(len(df)), df.drop(columns=["price", "listed"]).to_numpy(float)]
coef, *_ = np.linalg.lstsq(x, df["price"].to_numpy(float), rcond=None)
began = time.monotonic()
time.sleep(0.3)  # sleeps and timeouts run on the real monotonic clock under a frozen one
assert time.monotonic() - began >= 0.25
pd.DataFrame({"coef": coef}).to_csv("coefficients.csv", float_format="%.6f")
with open("report.json", "w") as f:
    json.dump({"rows": len(df), "days": int(days.astype(int).sum()),
               "trained_at": pd.Timestamp.now().isoformat()}, f)
print("rmse", float(np.sqrt(np.mean((x @ coef - df["price"]) ** 2))))
'''


def test_a_pandas_job_is_diagnosed_not_crashed(tmp_path, fresh_env, cleanup):
    """The old frozen clock swapped in its own datetime types and pandas crashed (exit 139)
    in every controlled replay; the report then blamed the job, once per file."""
    root = tmp_path / "pandas-report"
    root.mkdir()
    shutil.copytree(CORPUS / "pandas-sklearn" / "data", root / "data")
    shutil.copy(CORPUS / "pandas-sklearn" / "requirements.txt", root)  # the same image
    (root / "train.py").write_text(PANDAS_JOB)
    (root / ".gitignore").write_text(".repro/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "clone")
    cleanup.append(root)
    assert newcomer("init", cwd=root)[0].returncode == 0
    run = launched(root)

    doc = diagnosed(root, run["id"])
    assert doc["result"] == "nondeterministic"
    [cause] = doc["causes"]
    assert cause["cause"] == "clock" and cause["line"].startswith("the wall clock: ")
    [report] = cause["subjects"]
    assert (report["subject"], report["where"]) == ("report.json", ".trained_at")
    assert report["how_much"].startswith("1 value(s) differ")  # as a plain replay shows
    controlled = next(e for e in doc["experiments"] if e["name"] == "controlled")
    assert controlled["agree"] is True


TIME_SEEDED = '''\
"""Initial weights from a generator seeded by the clock (a pattern seen in the wild)."""
import time

import numpy as np

rng = np.random.default_rng(int(time.time() * 1000))
w = rng.normal(size=64)
for _ in range(50):
    w -= 0.1 * (w - 1.0)
np.save("weights.npy", w)
print("loss", float(((w - 1.0) ** 2).mean()))
'''


def launched_on_the_train_image(proj: Path, name: str, script: str, outputs: str) -> dict:
    """A one-file job (``script``) in the test project, on the shipped train image."""
    code = proj / "examples" / name
    code.mkdir()
    (code / "job.py").write_text(script)
    (proj / "specs" / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        name: {name}
        image: {{build: ../images/train}}
        code: {{path: ../examples/{name}}}
        command: [python3, job.py]
        outputs: {outputs}
    """))
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", name)
    p = repro("launch", f"specs/{name}.yaml", "--json", cwd=proj, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_a_job_seeded_from_the_clock(proj):
    run = launched_on_the_train_image(proj, "time-seeded", TIME_SEEDED, "[weights.npy]")
    doc = diagnosed(proj, run["id"])
    [cause] = doc["causes"]
    assert cause["cause"] == "clock"
    [weights] = cause["subjects"]
    assert (weights["subject"], weights["where"]) == ("weights.npy", "64 values")
    assert "seed nothing from the clock" in cause["fixes"][0]


BREAKS_UNDER_A_FROZEN_CLOCK = '''\
"""Writes the time; crashes (SIGSEGV, as compiled code did) when its clock stands still."""
import ctypes
import os
import time

if os.environ.get("REPRO_FROZEN_CLOCK"):  # a real fault: a signal to PID 1 is ignored
    ctypes.string_at(0)
for name in ("a.txt", "b.txt"):
    with open(name, "w") as f:
        f.write(f"{time.time()}\\n")
'''


def test_a_control_that_breaks_the_job_is_inconclusive_never_agreement(proj):
    run = launched_on_the_train_image(proj, "fragile", BREAKS_UNDER_A_FROZEN_CLOCK,
                                      "[a.txt, b.txt]")
    p = repro("diagnose", run["id"], "--json", cwd=proj, timeout=600)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    doc = json.loads(p.stdout)
    assert doc["result"] == "inconclusive", json.dumps(doc, indent=1)[:4000]
    [cause] = doc["causes"]  # once, not once per file
    assert cause["line"].startswith("inconclusive: the control broke the job (exit 139, a "
                                    "segmentation fault): with the wall clock free it ran as "
                                    "recorded, so the wall clock frozen at the recorded start "
                                    "stopped it")
    assert [s["subject"] for s in cause["subjects"]] == ["a.txt", "b.txt"]
    controlled = next(e for e in doc["experiments"] if e["name"] == "controlled")
    assert controlled["agree"] is None and controlled["failed"] == cause["line"]
    human = repro("show", run["id"], cwd=proj).stdout
    assert "INCONCLUSIVE" in human and "pair agree" not in human
