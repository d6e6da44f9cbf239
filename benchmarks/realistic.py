"""A realistic project's second launch against the same job under `docker run` (issue 24).

    python benchmarks/realistic.py [--out bench-out/realistic.json] [-n 5]

The project: tests/projects/pandas-sklearn (argparse, pandas + scikit-learn from a
requirements file) grown to what a small real project carries: 4 MiB of tracked data and code
beside it, and a script that fits on every data file and writes 20 outputs. `repro init`
writes its spec, image recipe and lock; a first `repro launch` builds the image (not timed).
Then, alternating: `repro launch` (the image, snapshot cache and bytecode warm, as on a second
run), `docker run --rm` of the same image running the same command in a copy of the
project (the job's own time: the floor), and that again with PYTHONPYCACHEPREFIX set as repro
set it before issue 24 (no .pyc read: pandas and scikit-learn compiled on every run). One more launch runs under a tracer that says where
the time above the floor goes: before the first engine call (imports, spec, git, hashing),
the engine calls before the job starts, the job, and after it (outputs stored, the record).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import timed  # noqa: E402

REPRO = [sys.executable, "-m", "orchestrator"]
OUTPUTS = 20

FIT = f'''\
"""Fit a ridge regression per data file; write one prediction file per fit."""
import glob
import os

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

os.makedirs("reports", exist_ok=True)
files = sorted(glob.glob("data/extra/*.csv"))
for i, path in enumerate(files[:{OUTPUTS}]):
    df = pd.read_csv(path)
    X, y = df.drop(columns=["price"]), df["price"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=i)
    scaler = StandardScaler().fit(X_train)
    model = Ridge(alpha=1.0).fit(scaler.transform(X_train), y_train)
    pred = model.predict(scaler.transform(X_test))
    print(f"step {{i}} rmse {{float(np.sqrt(np.mean((pred - y_test) ** 2))):.4f}}")
    X_test.assign(price=y_test, predicted=pred).to_csv(f"reports/fit_{{i:02d}}.csv",
                                                        float_format="%.6f")
'''

TRACER = r'''
import json, runpy, sys, time
T0 = time.perf_counter()
marks = []
import requests.sessions as rs
_request = rs.Session.request
def request(self, method, url, *a, **k):
    s = time.perf_counter() - T0
    try:
        return _request(self, method, url, *a, **k)
    finally:
        marks.append((s, time.perf_counter() - T0, method, url.rsplit("/", 1)[-1][:40]))
rs.Session.request = request
def report():
    marks.sort()
    end = time.perf_counter() - T0
    start = next((m for m in marks if m[2] == "POST" and m[3] == "start"), None)
    wait = next((m for m in marks if m[2] == "POST" and m[3].startswith("wait")), None)
    print("PHASES " + json.dumps({"first_engine_call": marks[0][0] if marks else None,
        "job_start_call": start[0] if start else None, "job_ended": wait[1] if wait else None,
        "exit": end}), file=sys.stderr)
import atexit; atexit.register(report)
sys.argv = ["repro"] + sys.argv[1:]
runpy.run_module("orchestrator", run_name="__main__")
'''


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), "-c", "user.name=bench", "-c",
                    "user.email=bench@example.invalid", *args], check=True, capture_output=True)


def project(tmp: Path) -> Path:
    proj = tmp / "pandas-sklearn"
    shutil.copytree(ROOT / "tests" / "projects" / "pandas-sklearn", proj,
                    ignore=shutil.ignore_patterns("__pycache__"))
    rows = (proj / "data" / "housing.csv").read_text().splitlines()
    header, body = rows[0], rows[1:]
    extra = proj / "data" / "extra"
    extra.mkdir()
    for i in range(OUTPUTS):  # 20 files of ~200 KiB: 4 MiB of tracked data
        lines = [header]
        n = 0
        while sum(map(len, lines)) < 200 << 10:
            lines.append(body[(n * 7 + i) % len(body)])
            n += 1
        (extra / f"part_{i:02d}.csv").write_text("\n".join(lines) + "\n")
    (proj / "fit_all.py").write_text(FIT)
    git(proj, "init", "-q")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "bench")
    return proj


def measure(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="repro-realistic-") as t:
        tmp = Path(t)
        proj = project(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["REPRO_HOME"] = str(tmp / "home")
        subprocess.run([*REPRO, "init", "--script", "fit_all.py"], cwd=proj, env=env,
                       check=True, capture_output=True)
        git(proj, "add", "-A")
        git(proj, "commit", "-qm", "repro init")
        launch = [*REPRO, "launch", "-q", "--json"]
        first = subprocess.run(launch, cwd=proj, env=env, capture_output=True, text=True)
        if first.returncode != 0:
            raise SystemExit(f"first launch failed: {first.stderr[-2000:]}")
        run = json.loads(first.stdout)
        assert len(run["outputs"]) == OUTPUTS, sorted(run["outputs"])
        image = run["resolved"]["image"]["digest"]
        copy = tmp / "docker-copy"
        docker = ["docker", "run", "--rm", "--network", "none", "--user", "65534:65534",
                  "-e", "HOME=/tmp", "-v", f"{copy}:/work", "-w", "/work", image,
                  *run["resolved"]["command"]]

        def fresh_copy() -> None:  # the job writes into its folder: a clean one each time
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(proj, copy, ignore=shutil.ignore_patterns(".git", ".repro"))
            os.chmod(copy, 0o777)

        # the job as repro ran it before issue 24: PYTHONPYCACHEPREFIX set, so no .pyc read
        old_env = [*docker[:3], "-e", "PYTHONPYCACHEPREFIX=/tmp/pycache", *docker[3:]]
        fresh_copy()
        timed(docker)
        ours, base, old = [], [], []
        for _ in range(n):
            ours.append(timed(launch, cwd=proj, env=env))
            fresh_copy()
            base.append(timed(docker))
            fresh_copy()
            old.append(timed(old_env))
        tracer = tmp / "tracer.py"
        tracer.write_text(TRACER)
        traced = subprocess.run([sys.executable, str(tracer), "launch", "-q"], cwd=proj,
                                env=env, capture_output=True, text=True, check=True)
        line = next(x for x in traced.stderr.splitlines() if x.startswith("PHASES "))
        phases = json.loads(line[len("PHASES "):])
    r, d = statistics.median(ours), statistics.median(base)
    return {"n": n, "repro_s": r, "docker_s": d, "above_s": r - d, "ratio": r / d,
            "docker_no_pyc_s": statistics.median(old),
            "outputs": OUTPUTS, "phases": phases}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "realistic.json")
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    res = measure(args.n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
