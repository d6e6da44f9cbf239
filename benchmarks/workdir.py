"""What the working folder costs: a job runs in a writable copy of its code snapshot
(``orchestrator/workdir.py``), and its outputs are what it created or changed there.

    python benchmarks/workdir.py [--before REF] [-n N] [--write]

``--write`` puts its section into BENCHMARKS.md (``make bench`` keeps it there).

1. Laying out the copy and finding what changed, for a tree of 1 file, a realistic project
   (400 files, 8 MiB) and a large one (4,000 files, 100 MiB), against `cp -r` of the same
   tree (the floor a copy pays), alternating, medians of N.
2. With ``--before REF``: `repro launch specs/hello.yaml` at REF (before the working
   folder) and now, alternating in the same run, against `docker run --rm` of the same
   image and command.
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import bench_launch, checkout  # noqa: E402
from orchestrator import workdir  # noqa: E402
from orchestrator.outputs import collect  # noqa: E402
from orchestrator.store import open_store  # noqa: E402

TREES = {"1 file": (1, 1 << 10), "a project: 400 files, 8 MiB": (400, 8 << 20),
         "a large repository: 4,000 files, 100 MiB": (4000, 100 << 20)}


def make_tree(root: Path, files: int, size: int) -> None:
    each = max(1, size // files)
    for i in range(files):
        p = root / f"pkg{i % 20}" / f"sub{i % 7}" / f"f{i}.py"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(each))


def bench_tree(name: str, files: int, size: int, n: int, tmp: Path) -> dict:
    src = tmp / f"snapshot-{files}"
    make_tree(src, files, size)
    store = open_store(tmp / "home")
    ours, floor = [], []
    for i in range(n):
        work = tmp / f"work-{files}-{i}"
        t0 = time.perf_counter()
        folder = workdir.lay_out(work, src, {})
        (folder / "model.bin").write_bytes(b"x" * 1000)  # what a job leaves
        found = collect(folder, ["**"], store.artifacts, untouched=workdir.Untouched(work))
        ours.append(time.perf_counter() - t0)
        assert list(found.stored) == ["model.bin"], found.stored
        shutil.rmtree(work)
        t0 = time.perf_counter()
        subprocess.run(["cp", "-r", str(src), str(tmp / "cp")], check=True)
        floor.append(time.perf_counter() - t0)
        shutil.rmtree(tmp / "cp")
    store.close()
    return {"tree": name, "files": files, "bytes": size, "ours": statistics.median(ours),
            "floor": statistics.median(floor),
            "ratio": statistics.median(ours) / statistics.median(floor), "n": n}


HEADING = "## What the working folder costs"


def section(res: dict) -> str:
    rows = "".join(f"| {t['tree']} | {t['ours'] * 1000:.1f} ms | {t['floor'] * 1000:.1f} ms | "
                   f"**{t['ratio']:.2f}x** |\n" for t in res["trees"])
    text = f"""{HEADING}

`benchmarks/workdir.py` on {datetime.now(UTC):%Y-%m-%d}, medians of {res['trees'][0]['n']},
alternating. A job runs in a writable copy of its code snapshot (`orchestrator/workdir.py`);
laying it out (copy, modes, times, the facts of every file) and finding afterwards what the
job created or changed, against `cp -r` of the same tree:

| tree | lay out + find outputs | `cp -r` | ratio |
|---|---|---|---|
{rows}"""
    la = res.get("launch")
    if la:
        text += f"""
End to end, `repro launch specs/hello.yaml` now {la['repro'] * 1000:.0f} ms, with the code at
`{la['before_ref']}` (an empty `/repro/outputs`, the code read-only) {la['before'] * 1000:.0f} ms,
`docker run --rm` {la['docker'] * 1000:.0f} ms (n={la['n']}, alternating).
"""
    text += """
Creating files is what costs on this disk (ext4 with `discard`: about 0.5 ms a file, as
`cp -r` pays), not their bytes: a realistic project pays ~0.2 s a launch, a 4,000-file
repository ~3 s. An overlay mount (the snapshot as the lower layer, the run's folder as the
upper) would make it constant; it needs the engine to mount it (a `local` volume of type
`overlay` on Docker, `:O` on podman) and is left to the launch-speed work.
"""
    return text


def write_section(text: str, out: Path) -> None:
    doc = out.read_text()
    if HEADING in doc:
        start = doc.index(HEADING)
        end = doc.find("\n## ", start + len(HEADING))
        doc = doc[:start] + doc[end + 1 if end >= 0 else len(doc):]
    cut = doc.index("## Rebuilding the same recipe")
    out.write_text(doc[:cut] + text.rstrip() + "\n\n" + doc[cut:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=7)
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    ap.add_argument("--before", help="a git ref whose launch is timed in the same run")
    ap.add_argument("--json", type=Path, default=ROOT / "bench-out" / "workdir.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="repro-bench-workdir-") as t:
        tmp = Path(t)
        res: dict = {"trees": [bench_tree(name, f, s, args.n, tmp)
                               for name, (f, s) in TREES.items()]}
        if args.before:
            before = checkout(args.before, tmp)
            try:
                res["launch"] = bench_launch(args.n, tmp, before)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(before)], capture_output=True)
            res["launch"]["before_ref"] = args.before
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2))
    for t in res["trees"]:
        print(f"{t['tree']}: lay out + find outputs {t['ours'] * 1000:.1f} ms, cp -r "
              f"{t['floor'] * 1000:.1f} ms ({t['ratio']:.2f}x)")
    if "launch" in res:
        la = res["launch"]
        print(f"launch now {la['repro'] * 1000:.0f} ms, at {args.before} "
              f"{la['before'] * 1000:.0f} ms, docker run {la['docker'] * 1000:.0f} ms")
    if args.write:
        write_section(section(res), ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
