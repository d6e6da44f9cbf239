"""What a prefix or a segment verify costs against a full one (issue 25).

    python benchmarks/partial.py [-n 2] [--steps 2000] [--out bench-out/partial.json]

A job of S steps (a few ms of work each, a loss logged per step, a checkpoint every S/8 steps,
resumable) is launched once; then, alternating, `repro verify RUN` (the whole run), `--steps
N` for N = S/20, S/4 and S/2, and `--segment` from the middle checkpoint to the next. Each
time is the whole command, start-up included: the cost should scale with the steps run plus
that start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import copy_project, git  # noqa: E402

REPRO = [sys.executable, "-m", "orchestrator"]
JOB = '''\
import argparse, os
import numpy as np
import repro

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int)
p.add_argument("--every", type=int)
p.add_argument("--resume")
a = p.parse_args()
w, start = np.zeros(64), 0
if a.resume:
    with np.load(a.resume) as ck:
        w, start = ck["w"], int(ck["step"])
for step in range(start + 1, a.steps + 1):
    for _ in range(400):  # a step's work: a few ms, the same in every run
        w = np.tanh(w + 1e-3 * np.sin(step + np.arange(64)))
    repro.log_metric("loss", float(w @ w), step=step)
    if step % a.every == 0:
        os.makedirs("checkpoints", exist_ok=True)
        with open("checkpoints/tmp", "wb") as f:
            np.savez(f, w=w, step=np.array(step))
        os.replace("checkpoints/tmp", f"checkpoints/step_{step}.npz")
'''


def verify(run_id: str, args: list[str], proj: Path, env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = subprocess.run([*REPRO, "verify", run_id, *args, "--json"], cwd=proj, env=env,
                       capture_output=True, text=True)
    took = time.perf_counter() - t0
    if p.returncode not in (0, 12, 13):
        raise RuntimeError(f"verify {' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
    return took, json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "partial.json")
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    s, every = args.steps, args.steps // 8
    with tempfile.TemporaryDirectory(prefix="repro-partial-") as t:
        proj = copy_project(Path(t) / "project")
        (proj / "examples" / "long").mkdir()
        (proj / "examples" / "long" / "train.py").write_text(JOB)
        (proj / "specs" / "long.yaml").write_text(
            "version: 1\nname: long\nimage: {build: ../images/base}\n"
            "code: {path: ../examples/long}\n"
            f"command: [python3, train.py, --steps, '{s}', --every, '{every}']\nseed: 0\n"
            "resume: {checkpoints: 'checkpoints/step_{step}.npz', args: [--resume, '{path}']}\n")
        git(proj, "add", "-A")
        git(proj, "commit", "-qm", "long")
        env = {**os.environ, "REPRO_HOME": str(Path(t) / "home")}
        p = subprocess.run([*REPRO, "launch", "specs/long.yaml", "--json", "-q"], cwd=proj,
                           env=env, capture_output=True, text=True, check=True)
        run = json.loads(p.stdout)
        kinds = {"full": [], **{f"--steps {s // k}": ["--steps", str(s // k)]
                                for k in (20, 4, 2)},
                 f"--segment {s // 2}": ["--segment", str(s // 2)]}
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.n):
            for name, extra in kinds.items():
                took, rep = verify(run["id"], extra, proj, env)
                assert rep["verdict"]["result"].startswith("identical"), rep["verdict"]
                times[name].append(took)
    full = statistics.median(times["full"])
    res = {"n": args.n, "steps": s, "job_s": run["duration_s"],
           "rows": [{"what": name, "s": statistics.median(v),
                     "ratio": statistics.median(v) / full,
                     "share": 1.0 if name == "full" else
                     (every if "segment" in name else int(name.split()[-1])) / s}
                    for name, v in times.items()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
