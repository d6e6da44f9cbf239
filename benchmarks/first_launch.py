"""The first launch of a new image recipe against `docker build` then `docker run` (issue 24).

    python benchmarks/first_launch.py [--out bench-out/first_launch.json] [-n 3] [--before REF]

A project whose recipe is built FROM the base recipe and adds a layer of --layer-mb MiB (what
a pip install adds), with a fresh nonce before every launch so each one builds a new image:
the build, the image's first archive into the store (its base layers are there already, as
they are after any earlier run) and a job of a fixed amount of work (about --job-s seconds on
an idle machine; 3 s and 10 s by default). The baseline is the same Dockerfile through `docker build` and the same job
through `docker run`, alternating with it. ``--before REF`` times the code at REF in the same
run (a worktree), with its own store.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import timed  # noqa: E402

REPRO = [sys.executable, "-m", "orchestrator"]
DOCKERFILE = """ARG BASE
FROM ${{BASE}}
RUN head -c {size} /dev/urandom > /layer.bin && echo {nonce} > /nonce
"""
JOB = """import hashlib
h = hashlib.sha256()
for i in range({rounds}):
    h.update(i.to_bytes(8, "little") * 512)
open("result.txt", "w").write(h.hexdigest())
print("done", h.hexdigest()[:16])
"""


def rounds_for(seconds: float) -> int:
    """Rounds of JOB's loop that take ``seconds`` here, on an idle core."""
    h, n, t0 = __import__("hashlib").sha256(), 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        for i in range(10_000):
            h.update(i.to_bytes(8, "little") * 512)
        n += 10_000
    return int(n * seconds / (time.perf_counter() - t0))


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), "-c", "user.name=bench", "-c",
                    "user.email=bench@example.invalid", *args], check=True, capture_output=True)


def project(tmp: Path, rounds: int) -> Path:
    proj = tmp / "fresh-recipe"
    shutil.copytree(ROOT / "images" / "base", proj / "images" / "base")
    (proj / "images" / "fresh").mkdir()
    (proj / "images" / "fresh" / "recipe.yaml").write_text("base: ../base\n")
    (proj / "code").mkdir()
    (proj / "code" / "train.py").write_text(JOB.format(rounds=rounds))
    (proj / "spec.yaml").write_text("version: 1\nname: fresh\nimage:\n  build: images/fresh\n"
                                    "code:\n  path: code\ncommand: [python3, train.py]\n"
                                    "seed: 0\n")
    git(proj, "init", "-q")
    return proj


def new_recipe(proj: Path, size: int, nonce: str) -> None:
    (proj / "images" / "fresh" / "Dockerfile").write_text(DOCKERFILE.format(size=size,
                                                                            nonce=nonce))
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", nonce)


def launched(cmd: list[str], cwd: Path, env: dict, made: list[str]) -> float:
    """Seconds a `repro launch --json` took; the image it built goes on ``made``."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
    made.append(json.loads(p.stdout)["resolved"]["image"]["digest"])
    return took


def built(cmd: list[str], made: list[str]) -> float:
    """Seconds a `docker build -q` took; the image it built goes on ``made``."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    took = time.perf_counter() - t0
    made.append(p.stdout.strip())
    return took


def remove(made: list[str]) -> None:
    """Only the images this benchmark built (never the base or anyone's recipes)."""
    if made:
        subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)
        made.clear()


def measure(n: int, layer_mb: int, job_s: float, before: Path | None) -> dict:
    size = layer_mb << 20
    with tempfile.TemporaryDirectory(prefix="repro-first-launch-") as t:
        tmp = Path(t)
        proj = project(tmp, rounds_for(job_s))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["REPRO_HOME"] = str(tmp / "home")
        old_env = {**env, "REPRO_HOME": str(tmp / "home-before"), "PYTHONPATH": str(before)}
        launch = [*REPRO, "launch", "spec.yaml", "-q", "--json"]
        homes = [env] + ([old_env] if before is not None else [])
        made: list[str] = []
        for i, e in enumerate(homes):  # warm: the base built and archived in each store
            new_recipe(proj, 1 << 20, f"warm-{i}")
            launched(launch, proj, e, made)
        base = json.loads(subprocess.run(
            [*REPRO, "image", "build", "images/base", "--json"], cwd=proj, env=env,
            capture_output=True, text=True, check=True).stdout)["id"]
        ours, builds, runs, old = [], [], [], []
        for i in range(n):
            new_recipe(proj, size, f"repro-{i}-{time.time_ns()}")
            ours.append(launched(launch, proj, env, made))
            new_recipe(proj, size, f"docker-{i}-{time.time_ns()}")
            builds.append(built(["docker", "build", "-q", "--build-arg", f"BASE={base}",
                                 str(proj / "images" / "fresh")], made))
            job_image = made[-1]
            out = tmp / "docker-out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(mode=0o777)
            os.chmod(out, 0o777)
            runs.append(timed(["docker", "run", "--rm", "--network", "none", "--user",
                               "65534:65534", "-v", f"{proj / 'code'}:/code:ro", "-v",
                               f"{out}:/out", "-w", "/out", job_image, "python3",
                               "/code/train.py"]))
            if before is not None:
                new_recipe(proj, size, f"before-{i}-{time.time_ns()}")
                old.append(launched(launch, proj, old_env, made))
            remove(made)
    r = statistics.median(ours)
    floor = statistics.median([b + j for b, j in zip(builds, runs, strict=True)])
    res = {"n": n, "layer_mb": layer_mb, "job_s": statistics.median(runs),
           "build_s": statistics.median(builds), "repro_s": r, "docker_s": floor,
           "ratio": r / floor}
    if old:
        res.update(before_s=statistics.median(old), before_ratio=statistics.median(old) / floor)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "first_launch.json")
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--layer-mb", type=int, default=200, help="the recipe's own layer")
    ap.add_argument("--job-s", type=float, nargs="+", default=[3.0, 10.0],
                    help="the job's work, in seconds (each length measured in turn)")
    ap.add_argument("--before", help="a git ref timed in the same run (a worktree)")
    args = ap.parse_args()
    before = None
    with tempfile.TemporaryDirectory(prefix="repro-first-before-") as t:
        if args.before:
            before = Path(t) / "src"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f",
                            str(before), args.before], check=True, capture_output=True)
        try:
            res = {"jobs": [measure(args.n, args.layer_mb, s, before) for s in args.job_s]}
        finally:
            if before is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(before)], capture_output=True)
    res["before_ref"] = args.before
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
