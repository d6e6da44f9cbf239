"""Slurm benchmark on a real single-node cluster (tests/slurm.py):

- `repro launch specs/hello.yaml --executor slurm` against `sbatch --wait` of the same
  `docker run` (the floor: what a hand-written job script costs);
- a 20-point sweep as one job array (`repro sweep --executor slurm -j 20`) against 20
  separate `sbatch --wait` of the same `docker run`, submitted at once.

    python benchmarks/slurm.py [-n 7] [--out bench-out/slurm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import timed  # noqa: E402

REPRO = [sys.executable, "-m", "orchestrator"]
POINTS = 20


def many_sbatch(cmds: list[list[str]], env: dict) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in cmds]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("an sbatch --wait failed")
    return time.perf_counter() - t0


def polled(cmds: list[list[str]], env: dict) -> float:
    """Submit each with `sbatch --parsable` and poll `scontrol show job` every 0.5 s (as
    repro follows a run) until all have ended: the floor without sbatch --wait's own,
    coarser polling."""
    t0 = time.perf_counter()
    # (--quiet would hide the job id --parsable prints)
    jobs = [subprocess.run(c[:1] + ["--parsable"] + [a for a in c[1:]
                                                     if a not in ("--wait", "--quiet")],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
            for c in cmds]
    left = set(jobs)
    while left:
        for job in list(left):
            out = subprocess.run(["scontrol", "show", "job", "-o", job], env=env,
                                 capture_output=True, text=True).stdout
            if any(f"JobState={s}" in out for s in ("COMPLETED", "FAILED", "CANCELLED",
                                                    "TIMEOUT", "NODE_FAIL")):
                left.discard(job)
        if left:
            time.sleep(0.5)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "slurm.json")
    args = ap.parse_args()
    from orchestrator.engine import connect
    from orchestrator.engine.images import build
    from tests import slurm

    image = build(ROOT / "images" / "base", connect(), on_line=lambda _: None).id
    with tempfile.TemporaryDirectory(prefix="repro-slurmbench-") as t:
        tmp = Path(t)
        cluster = slurm.start(tmp / "cluster")
        try:
            proj = tmp / "project"
            for name in ("specs", "examples", "images", "data"):
                shutil.copytree(ROOT / name, proj / name)
            (proj / "specs" / "grid.yaml").write_text(
                "version: 1\nname: grid\nimage: {build: ../images/base}\n"
                "code: {path: ../examples/hello}\n"
                "command: [python3, -c, \"print('hello from repro')\", '{params.n}']\n"
                "params: {n: 0}\nseed: 0\n")
            for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
                subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@e", *cmd],
                               cwd=proj, check=True, capture_output=True)
            (tmp / "art").mkdir()
            env = {**os.environ, **cluster.env, "REPRO_HOME": str(tmp / "home"),
                   "REPRO_STORE": str(tmp / "team.db"), "REPRO_ARTIFACTS": str(tmp / "art")}
            docker = ["docker", "run", "--rm", "--network", "none", "--user", "65534:65534",
                      image, "python3", "-c", "print('hello from repro')"]
            floor = ["sbatch", "--wait", "--quiet", "-o", "/dev/null", "--mem=2048M",
                     "--wrap", shlex.join(docker)]
            launch = [*REPRO, "launch", "specs/hello.yaml", "--executor", "slurm", "-q",
                      "--json"]
            timed(launch, env, proj)  # warm: image archive, snapshot cache
            timed(floor, env)
            ours, base, poll = [], [], []
            for _ in range(args.n):
                ours.append(timed(launch, env, proj))
                base.append(timed(floor, env))
                poll.append(polled([floor], env))
            values = ",".join(str(i) for i in range(POINTS))
            sweep = [*REPRO, "sweep", "specs/grid.yaml", "--grid", f"n={values}",
                     "--executor", "slurm", "-j", str(POINTS), "--json"]
            floors = [floor] * POINTS
            sweeps, separate, separate_poll = [], [], []
            for _ in range(max(1, args.n // 3)):
                sweeps.append(timed(sweep, env, proj))
                separate.append(many_sbatch(floors, env))
                separate_poll.append(polled(floors, env))
        finally:
            cluster.stop()
    runs = {"launch": ours, "sbatch": base, "sbatch_polled": poll, "sweep": sweeps,
            "separate": separate, "separate_polled": separate_poll}
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {"n": args.n, "points": POINTS, "runs": runs, "median": med,
              "launch_ratio": med["launch"] / med["sbatch"],
              "launch_polled_ratio": med["launch"] / med["sbatch_polled"],
              "sweep_ratio": med["sweep"] / med["separate"],
              "sweep_polled_ratio": med["sweep"] / med["separate_polled"],
              "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
