"""Push benchmark: `repro push` of a run with a 1 GiB output into a team store (a real
PostgreSQL server, tests/pg.py) with its artifacts in a shared folder or a real registry,
against the floors: a plain `cp` of the output into the shared folder, and a raw blob upload
of it to the same registry (one POST, one streamed PUT).

    python benchmarks/push.py [--size-mb 1024] [-n 3] [--out bench-out/push.json]

Each repetition pushes into a fresh database (its schema set up before timing) and a fresh
folder; for the registry, the blobs
the previous repetition uploaded are deleted first (the registry runs with deletes enabled),
so every push moves the whole GiB. The image is in the registry already (pushed once before
timing), as it is for a team after its first run with that image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
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


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
                    *args], cwd=cwd, check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "registry.yml"
    config.write_text(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  delete: {{enabled: "
                      f"true}}\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed; run scripts/ensure-docker"
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    return proc, f"127.0.0.1:{port}"


def raw_upload(registry: str, repo: str, path: Path, digest: str) -> float:
    import requests

    t0 = time.perf_counter()
    r = requests.post(f"http://{registry}/v2/{repo}/blobs/uploads/", timeout=60)
    location = r.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    with open(path, "rb") as f:
        r = requests.put(f"{location}{sep}digest=sha256:{digest}", data=f, timeout=600,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(path.stat().st_size)})
    if r.status_code != 201:
        raise RuntimeError(f"raw upload: HTTP {r.status_code} {r.text[:200]}")
    return time.perf_counter() - t0


def delete_blob(registry: str, repo: str, digest: str) -> None:
    import requests

    requests.delete(f"http://{registry}/v2/{repo}/blobs/sha256:{digest}", timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "push.json")
    args = ap.parse_args()
    from tests import pg

    with tempfile.TemporaryDirectory(prefix="repro-pushbench-") as t:
        tmp = Path(t)
        proj = tmp / "project"
        for name in ("specs", "examples", "images", "data"):
            shutil.copytree(ROOT / name, proj / name)
        job = (f"f = open('/repro/outputs/big.bin', 'wb')\n"
               f"for i in range({args.size_mb}): f.write(bytes([i % 256]) * (1 << 20))\n")
        (proj / "specs" / "big.yaml").write_text(
            "version: 1\nname: big\nimage: {build: ../images/base}\n"
            f"code: {{path: ../examples/hello}}\ncommand: [python3, -c, {json.dumps(job)}]\n"
            "seed: 0\nresources: {memory: 2g}\n")
        git(proj, "init", "-q")
        git(proj, "add", "-A")
        git(proj, "commit", "-qm", "bench")
        env = {**os.environ, "REPRO_HOME": str(tmp / "home"), "REPRO_ARCHIVE_IMAGES": "0"}
        for k in ("REPRO_STORE", "REPRO_ARTIFACTS"):
            env.pop(k, None)
        out = subprocess.run([*REPRO, "launch", "specs/big.yaml", "--json", "-q"], cwd=proj,
                             env=env, capture_output=True, text=True, check=True)
        run = json.loads(out.stdout)
        big_hex = run["outputs"]["big.bin"]["sha256"]
        big = tmp / "home" / "artifacts" / big_hex[:2] / big_hex[2:]
        assert hashlib.sha256(big.read_bytes()).hexdigest() == big_hex

        server = pg.start(tmp / "pg")
        registry, where = start_registry(tmp / "reg")
        try:
            repo = "team/runs"
            res: dict[str, list[float]] = {"push_folder": [], "cp": [], "cp_sync": [],
                                           "push_registry": [], "raw_upload": []}
            # the image once, as after a team's first run with it (not timed)
            server.create_db("warm")
            timed([*REPRO, "push", run["id"], "--to", server.url(db="warm"),
                   "--to-artifacts", f"oci://{where}/{repo}"], env=env)
            for i in range(args.n):
                for d in (f"f{i}", f"r{i}"):  # a team store exists before anyone pushes:
                    server.create_db(d)  # its schema is set up here, not timed
                    timed([*REPRO, "--store", server.url(db=d), "runs"], env=env)

            def push_folder(i: int) -> float:
                shared = tmp / f"shared{i}"
                shared.mkdir()
                took = timed([*REPRO, "push", run["id"], "--to", server.url(db=f"f{i}"),
                              "--to-artifacts", f"file://{shared}"], env=env)
                shutil.rmtree(shared)
                return took

            def cp(i: int, sync: bool) -> float:
                dest = tmp / f"cp{i}"
                dest.mkdir()
                took = timed(["sh", "-c", f"cp {big} {dest}/big.bin"
                              + (f" && sync {dest}/big.bin" if sync else "")])
                shutil.rmtree(dest)
                return took

            # the copies into a folder first, in turn, each starting with no writes pending
            # and the order rotating: on this VM the first write into memory the page cache
            # has not used yet is the slow one, whoever does it
            steps = {"push_folder": push_folder, "cp": lambda i: cp(i, False),
                     "cp_sync": lambda i: cp(i, True)}
            for i in range(args.n):
                names = list(steps)
                for name in names[i % 3:] + names[:i % 3]:
                    os.sync()
                    res[name].append(steps[name](i))
            for i in range(args.n):
                delete_blob(where, repo, big_hex)
                os.sync()
                res["push_registry"].append(timed(
                    [*REPRO, "push", run["id"], "--to", server.url(db=f"r{i}"),
                     "--to-artifacts", f"oci://{where}/{repo}"], env=env))
                delete_blob(where, repo, big_hex)
                os.sync()
                res["raw_upload"].append(raw_upload(where, repo, big, big_hex))
        finally:
            registry.terminate()
            registry.wait(timeout=10)
            server.stop()
    med = {k: statistics.median(v) for k, v in res.items()}
    result = {"size_mb": args.size_mb, "n": args.n, "runs": res, "median": med,
              "folder_ratio": med["push_folder"] / med["cp"],
              "folder_sync_ratio": med["push_folder"] / med["cp_sync"],
              "registry_ratio": med["push_registry"] / med["raw_upload"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
