"""Charliecloud against Docker, in the same run (issue 26).

    python benchmarks/charliecloud.py [--out bench-out/charliecloud.json] [-n 5]

1. A launch of specs/hello.yaml under Charliecloud (REPRO_ENGINE=charliecloud, the image
   unpacked already) against `repro launch` under Docker, `docker run` of the same job alone
   and `ch-run` of it alone (the same image folder, the code bound), alternating; medians.
2. The first use of an image: unpacking it from the store's archive (every layer checked
   against its diff_id) against `docker create` + `docker export | tar -x` of the same image.
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
sys.path.insert(0, str(ROOT))

from timing import hello_project, timed  # noqa: E402

REPRO = [sys.executable, "-m", "orchestrator"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "charliecloud.json")
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="repro-bench-ch-") as t:
        tmp = Path(t)
        os.chmod(tmp, 0o755)  # ch-run alone runs as nobody
        proj = hello_project(tmp, ROOT)
        env = {**os.environ, "REPRO_HOME": str(tmp / "home"), "USER": "root"}
        ch = {**env, "REPRO_ENGINE": "charliecloud", "REPRO_IMAGE_CACHE": str(tmp / "cache")}
        out = subprocess.run([*REPRO, "launch", "specs/hello.yaml", "--json"], cwd=proj,
                             env=env, capture_output=True, text=True, check=True)
        image = json.loads(out.stdout)["resolved"]["image"]["digest"]
        timed([*REPRO, "launch", "specs/hello.yaml"], env=ch, cwd=proj)  # unpacks it
        folder = tmp / "cache" / "images" / image.removeprefix("sha256:") / "root"
        code = proj / "examples" / "hello"
        job = ["python3", "/repro/code/hello.py"]
        outputs = tmp / "r" / "outputs"  # where the job writes, as in a run
        shutil.copytree(code, tmp / "r" / "code")  # /repro: the image lacks its subfolders
        outputs.mkdir()
        os.chmod(outputs, 0o777)
        cmds = {
            "repro launch (charliecloud)": ([*REPRO, "launch", "specs/hello.yaml"], ch),
            "repro launch (docker)": ([*REPRO, "launch", "specs/hello.yaml"], env),
            "docker run": (["docker", "run", "--rm", "--network", "none", "-u", "65534",
                            "-v", f"{code}:/repro/code:ro", "-v", f"{outputs}:/repro/outputs",
                            "-w", "/repro/outputs", image,
                            *job], env),
            # as the issue measured it: as nobody (ch-run is for unprivileged users)
            "ch-run": (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "ch-run", "--no-passwd", f"--bind={tmp / 'r'}:/repro",
                        "--cd=/repro/outputs", str(folder),
                        "--", *job], env),
        }
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.n):
            for name, (cmd, e) in cmds.items():
                times[name].append(timed(cmd, env=e, cwd=proj))
        launch = {k: statistics.median(v) for k, v in times.items()}
        unpack = first_use(image, tmp, env, args.n)
    doc = {"n": args.n, "launch": launch, "unpack": unpack}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2))


def first_use(image: str, tmp: Path, env: dict, n: int) -> dict[str, float]:
    """Seconds to unpack ``image`` from the store's archive, and by docker export | tar."""
    os.environ["REPRO_HOME"] = env["REPRO_HOME"]
    from orchestrator.engine.image_archive import join_from_store, read_index
    from orchestrator.engine.unpacked import Unpacked
    from orchestrator.store import open_store

    store = open_store(Path(env["REPRO_HOME"]))
    known = store.runs.image_archive(image)
    assert known is not None, "the image was not archived"
    index = read_index(known[0], store)
    assert index is not None
    ours, theirs = [], []
    for i in range(n):
        cache = tmp / f"unpack-{i}"
        t0 = time.perf_counter()
        Unpacked(cache).load(join_from_store(index, store, image))
        ours.append(time.perf_counter() - t0)
        shutil.rmtree(cache)
        dest = tmp / f"export-{i}"
        dest.mkdir()
        t0 = time.perf_counter()
        cid = subprocess.run(["docker", "create", image], capture_output=True, text=True,
                             check=True).stdout.strip()
        export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(dest)], stdin=export.stdout, check=True)
        assert export.wait() == 0
        theirs.append(time.perf_counter() - t0)
        subprocess.run(["docker", "rm", cid], capture_output=True, check=True)
        shutil.rmtree(dest)
    store.close()
    return {"repro unpack (checked)": statistics.median(ours),
            "docker export | tar -x": statistics.median(theirs)}


if __name__ == "__main__":
    main()
