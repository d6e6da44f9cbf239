"""What a diagnosis costs, as a multiple of one replay of the same run (same machine, same
run, alternating): `repro diagnose RUN` against `repro replay RUN`, for each example that
does not reproduce (the clock and entropy; a thread race; hash randomisation); and the same
diagnosis with -j 1 (its replays one after the other, as before issue 24).

    python benchmarks/diagnose.py [-n 3] [--out bench-out/diagnose.json]
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

from tests.helpers import copy_project  # noqa: E402

REPRO = [sys.executable, "-m", "orchestrator"]
SPECS = ("nondeterministic", "async-sgd", "hashseed")


def run(args: list[str], cwd: Path, env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = subprocess.run(REPRO + args + ["--json"], cwd=cwd, env=env, capture_output=True,
                       text=True)
    took = time.perf_counter() - t0
    if p.returncode not in (0, 8):  # a replay that differs exits 8: that is the point
        raise RuntimeError(f"repro {' '.join(args)} failed: {p.stderr[-2000:]}")
    return took, json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "diagnose.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="repro-bench-diag-") as t:
        proj = copy_project(Path(t) / "project")
        env = {**os.environ, "REPRO_HOME": str(Path(t) / "home"), "REPRO_ARCHIVE_IMAGES": "0"}
        env.pop("REPRO_STORE", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode used, as an installed repro does
        for name in SPECS:
            _, orig = run(["launch", f"specs/{name}.yaml", "-q"], proj, env)
            replays, diagnoses, serial, experiments, causes = [], [], [], [], []
            for _ in range(args.n):  # alternating
                replays.append(run(["replay", orig["id"], "-q"], proj, env)[0])
                took, doc = run(["diagnose", orig["id"], "-q"], proj, env)
                diagnoses.append(took)
                serial.append(run(["diagnose", orig["id"], "-q", "-j", "1"], proj, env)[0])
                experiments.append(doc["cost"]["replays"])
                causes = sorted({c["cause"] for f in doc["findings"] for c in f["causes"]})
            r, d = statistics.median(replays), statistics.median(diagnoses)
            one_by_one = statistics.median(serial)
            rows.append({"spec": name, "replay_s": r, "diagnose_s": d, "ratio": d / r,
                         "one_by_one_s": one_by_one, "one_by_one_ratio": one_by_one / r,
                         "replays_in_diagnosis": statistics.median(experiments),
                         "causes": causes})
            print(f"{name}: replay {r:.2f} s, diagnose {d:.2f} s ({d / r:.1f}x; -j 1: "
                  f"{one_by_one:.2f} s), "
                  f"{rows[-1]['replays_in_diagnosis']:g} replays, causes {causes}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n": args.n, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
