"""repro benchmarks, each a ratio against a baseline measured in the same run.

    make bench            # writes BENCHMARKS.md
    python benchmarks/run.py --quick --out /tmp/b.md

1. launch overhead: `repro launch specs/hello.yaml` vs `docker run --rm` of the same image and
   command, alternating, median of N each (target: ratio <= 1.5).
2. artifact ingest: ArtifactStore.put of a 1 GiB output (hash + copy + fsync + rename)
   vs `sha256sum` of the same file, alternating (target: ratio <= 1.3).
3. `repro --help` wall time (vs `python -c pass`).
4. replay overhead: `repro replay` of a hello run vs `repro launch` of the same spec.
5. image archive: size, and time to archive it into the store vs `docker save > /dev/null`.
6. queries over 100,000 runs vs a hand-written SQLite query and MLflow's search_runs
   (benchmarks/query.py; MLflow lives only in .venv-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

from timing import hello_project  # noqa: E402

from orchestrator.capture import cpu_facts  # noqa: E402
from orchestrator.engine import connect  # noqa: E402
from orchestrator.engine.image_save import ensure_archived  # noqa: E402
from orchestrator.engine.images import build  # noqa: E402
from orchestrator.store import open_store  # noqa: E402

REPRO = [sys.executable, "-m", "orchestrator"]


def timed(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), "-c", "user.name=bench", "-c",
                    "user.email=bench@example.invalid", *args], check=True,
                   capture_output=True)


def checkout(ref: str, tmp: Path) -> Path:
    """The repository at ``ref`` (a worktree), to time the code before a change against the
    code after it in one run: both use this venv, whose packages serve both."""
    dest = tmp / f"before-{ref}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(dest),
                    ref], check=True, capture_output=True)
    return dest


def bench_launch(n: int, tmp: Path, before: Path | None = None) -> dict:
    proj = hello_project(tmp, ROOT)
    env = {**os.environ, "REPRO_HOME": str(tmp / "home")}
    image = build(ROOT / "images" / "base", connect(), on_line=lambda _: None).id
    launch = [*REPRO, "launch", "specs/hello.yaml", "--json", "-q"]
    docker = ["docker", "run", "--rm", "--network", "none", "--user", "65534:65534", image,
              "python3", "-c", "print('hello from repro')"]
    old_env = {**env, "REPRO_HOME": str(tmp / "home-before"), "PYTHONPATH": str(before)}
    timed(launch, cwd=proj, env=env)  # warm: snapshot cache, page cache
    timed(docker)
    if before is not None:
        timed(launch, cwd=proj, env=old_env)
    ours, base, old = [], [], []
    for _ in range(n):
        ours.append(timed(launch, cwd=proj, env=env))
        base.append(timed(docker))
        if before is not None:
            old.append(timed(launch, cwd=proj, env=old_env))
    run_id = json.loads(subprocess.run(launch, cwd=proj, env=env, check=True,
                                       capture_output=True, text=True).stdout)["id"]
    replay = [*REPRO, "replay", run_id, "--json", "-q"]
    rep, lau = [], []
    for _ in range(n):
        rep.append(timed(replay, cwd=proj, env=env))
        lau.append(timed(launch, cwd=proj, env=env))
    before_s = statistics.median(old) if old else None
    return {"repro": statistics.median(ours), "docker": statistics.median(base),
            "ratio": statistics.median(ours) / statistics.median(base), "n": n,
            "before": before_s,
            "before_ratio": before_s / statistics.median(base) if before_s else None,
            "replay": statistics.median(rep), "relaunch": statistics.median(lau),
            "replay_ratio": statistics.median(rep) / statistics.median(lau), "image": image}


CHATTY_LINES = 200_000
CHATTY = f"import sys\nfor i in range({CHATTY_LINES}): print('step', i, 'loss', 1 / (i + 1))"


def bench_logs(image: str, n: int, tmp: Path) -> dict:
    """A job that prints a line per step (progress output): every line streamed into the
    store's log and hashed, vs `docker run` printing the same to /dev/null."""
    proj = tmp / "project"
    spec = proj / "specs" / "chatty.yaml"
    spec.write_text("version: 1\nname: chatty\nimage: {build: ../images/base}\n"
                    "code: {path: ../examples/hello}\n"
                    f"command: [python3, -c, {json.dumps(CHATTY)}]\nseed: 0\n")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "chatty")
    env = {**os.environ, "REPRO_HOME": str(tmp / "home")}
    launch = [*REPRO, "launch", "specs/chatty.yaml", "--json", "-q"]
    docker = ["docker", "run", "--rm", "--network", "none", "--user", "65534:65534", image,
              "python3", "-c", CHATTY]
    ours, base = [], []
    for _ in range(n):
        ours.append(timed(launch, cwd=proj, env=env))
        base.append(timed(docker))
    return {"repro": statistics.median(ours), "docker": statistics.median(base),
            "ratio": statistics.median(ours) / statistics.median(base), "n": n,
            "lines": CHATTY_LINES}


def bench_archive(image: str, n: int, tmp: Path) -> dict:
    ours, base = [], []
    size = 0
    for i in range(n):
        store = open_store(tmp / f"archive-{i}")
        t0 = time.perf_counter()
        ensure_archived(image, store, connect(), lambda _: None)
        ours.append(time.perf_counter() - t0)
        size = store.runs.image_archive(image)[1]
        shutil.rmtree(tmp / f"archive-{i}")
        t0 = time.perf_counter()
        subprocess.run(f"docker save {image} > /dev/null", shell=True, check=True)  # noqa: S602
        base.append(time.perf_counter() - t0)
    return {"repro": statistics.median(ours), "docker_save": statistics.median(base),
            "ratio": statistics.median(ours) / statistics.median(base), "size": size, "n": n}


def bench_ingest(size_mb: int, n: int, tmp: Path) -> dict:
    src = tmp / "output.bin"
    with open(src, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    ours, base = [], []
    for i in range(n):
        store = open_store(tmp / f"ingest-{i}")
        t0 = time.perf_counter()
        store.artifacts.put(src)
        ours.append(time.perf_counter() - t0)
        base.append(timed(["sha256sum", str(src)]))
        shutil.rmtree(tmp / f"ingest-{i}")
    mb = size_mb * 1.048576
    return {"repro": statistics.median(ours), "sha256sum": statistics.median(base),
            "ratio": statistics.median(ours) / statistics.median(base),
            "repro_mbps": mb / statistics.median(ours),
            "sha256sum_mbps": mb / statistics.median(base), "n": n, "size_mb": size_mb}


def bench_help(n: int) -> dict:
    ours = [timed([*REPRO, "--help"]) for _ in range(n)]
    base = [timed([sys.executable, "-c", "pass"]) for _ in range(n)]
    return {"repro": statistics.median(ours), "python": statistics.median(base), "n": n}


def import_cost() -> dict:
    # what a launch imports: the CLI, typer's pydantic-based option parsing, the runner
    # (records, store, engine client), the resolver (spec, yaml, images)
    code = ("import time; t=time.perf_counter(); import orchestrator.cli, typer._adapters, "
            "orchestrator.runner, orchestrator.resolve, orchestrator.engine.docker, docker; "
            "print(time.perf_counter()-t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, cwd=ROOT).stdout) for _ in range(5)]
    return {"launch_imports": statistics.median(runs)}


def kept_section(out: Path, heading: str) -> str:
    """A section another tool writes into ``out``, kept as it is (up to the next heading)."""
    text = out.read_text() if out.exists() else ""
    if heading not in text:
        return ""
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return "\n" + text[start:end if end >= 0 else len(text)].rstrip() + "\n"


def first_launch_rows(fl: dict | None) -> str:
    """benchmarks/first_launch.py's rows: one per job length."""
    rows = ""
    for r in (fl or {}).get("jobs", []):
        rows += (f"| first launch of a new recipe (a {r['layer_mb']} MiB layer on the base, "
                 f"built, archived beside a {r['job_s']:.0f} s job) vs `docker build` + "
                 f"`docker run` (n={r['n']}) | {r['repro_s']:.2f} s | {r['docker_s']:.2f} s | "
                 f"**{r['ratio']:.2f}x** | <= 1.2x ({'meets' if r['ratio'] <= 1.2 else 'misses'})"
                 " |\n")
    return rows


def report(res: dict, out: Path) -> None:
    cpu = cpu_facts()
    docker_v = connect().version()["version"]
    la, ing, hp, imp = res["launch"], res["ingest"], res["help"], res["imports"]
    ar, lg = res["archive"], res["logs"]
    ok = lambda r, t: "meets" if r <= t else "misses"  # noqa: E731
    before_row = (f"| the same launch with the code at `{res['before_ref']}` (before the "
                  f"redesign), alternating in the same run (n={la['n']}) | "
                  f"{la['before']*1000:.0f} ms | {la['docker']*1000:.0f} ms | "
                  f"**{la['before_ratio']:.2f}x** | before |\n" if la.get("before") else "")
    text = f"""# Benchmarks

Measured by `make bench` (`benchmarks/run.py`) on {datetime.now(UTC):%Y-%m-%d}: {cpu['model']},
{os.cpu_count()} cores, {platform.system()} {platform.release()}, Docker {docker_v},
Python {platform.python_version()}. Every figure is a median; every ratio is against a baseline
measured in the same run, alternating with it.

| benchmark | repro | baseline | ratio | target |
|---|---|---|---|---|
| launch of `specs/hello.yaml` vs `docker run --rm` of the same image and command (n={la['n']}) | {la['repro']*1000:.0f} ms | {la['docker']*1000:.0f} ms | **{la['ratio']:.2f}x** | <= 1.5x ({ok(la['ratio'], 1.5)}) |
{before_row}| ingest of a {ing['size_mb']} MiB output (hash + copy + fsync) vs `sha256sum` (n={ing['n']}) | {ing['repro']:.2f} s ({ing['repro_mbps']:.0f} MB/s) | {ing['sha256sum']:.2f} s ({ing['sha256sum_mbps']:.0f} MB/s) | **{ing['ratio']:.2f}x** | <= 1.3x ({ok(ing['ratio'], 1.3)}) |
| a job printing {lg['lines']:,} lines: launch (logs streamed into the store) vs `docker run` of it (n={lg['n']}) | {lg['repro']:.2f} s | {lg['docker']:.2f} s | {lg['ratio']:.2f}x | log streaming |
| `repro --help` vs `python -c pass` (n={hp['n']}) | {hp['repro']*1000:.0f} ms | {hp['python']*1000:.0f} ms | {hp['repro']/hp['python']:.1f}x | fast start |
| `repro replay` of a hello run vs `repro launch` of its spec (n={la['n']}) | {la['replay']*1000:.0f} ms | {la['relaunch']*1000:.0f} ms | **{la['replay_ratio']:.2f}x** | replay overhead |
| archive the base image into the store (first use) vs `docker save > /dev/null` (n={ar['n']}) | {ar['repro']:.2f} s | {ar['docker_save']:.2f} s | {ar['ratio']:.2f}x | {ar['size'] / 2**20:.0f} MiB archive |
{first_launch_rows(res.get("first_launch"))}
Where launch time goes: importing what a launch needs (typer, which parses options through
pydantic, pydantic models, yaml, the docker SDK with requests) takes
{imp['launch_imports']*1000:.0f} ms here before any work; the rest is the engine's
create/start/wait/remove (the same floor `docker run` pays), a logs follow, an inspect, the
environment capture inside the container, a git status of the code folder and the SQLite
writes. See the notes below.
"""
    text += query_section(res.get("query"))
    text += push_section(res.get("push"))
    text += slurm_section(res.get("slurm"))
    text += diagnose_section(res.get("diagnose"))
    text += partial_section(res.get("partial"))
    text += charliecloud_section(res.get("charliecloud"))
    text += launch_cost_section(res.get("launch_cost"), res.get("realistic"))
    text += kept_section(out, "## What the working folder costs")  # benchmarks/workdir.py
    text += kept_section(out, "## Rebuilding the same recipe")  # make rebuild-check's
    notes = ROOT / "benchmarks" / "NOTES.md"
    if notes.exists():
        text += "\n" + notes.read_text()
    for heading in ("## Issue 23", "## Issue 24"):  # before-and-after studies, by hand
        text += kept_section(out, heading)
    out.write_text(text)
    print(text)


def _bench_script(name: str, quick_args: list[str], quick: bool) -> dict | None:
    """Run benchmarks/NAME.py (with ``quick_args`` under --quick); its JSON result. A script
    with budgets exits 1 when one is exceeded, its result written: kept, and make bench
    fails once the report is written (``over_budget`` in the result)."""
    out = ROOT / "bench-out" / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--out", str(out)]
    if quick:
        cmd += quick_args
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    if code not in (0, 1) or not out.exists():
        return None
    return json.loads(out.read_text())


def query_section(q: dict | None) -> str:
    if not q:
        return "\nThe query benchmark did not run (see `python benchmarks/query.py`).\n"
    r, m = q["repro"], q["mlflow"]
    p, mp = q.get("repro_pg"), q.get("mlflow_pg") or {}

    def ms(x: dict | None, key: str, floor: bool = False) -> str:
        if not x or key not in x:
            return "not measured"
        ratio = f" ({x[key] / x['floor_s']:.1f}x)" if floor else ""
        return f"{x[key] * 1000:.1f} ms{ratio}"

    def ml(x: dict, store: dict | None) -> str:
        if "search_s" not in x:
            return f"not measured: {x.get('error', 'skipped')}"
        return (f"{x['search_s'] * 1000:.1f} ms ({x['search_s'] / store['records_s']:.0f}x "
                "repro's full records)" if store else f"{x['search_s'] * 1000:.1f} ms")

    target = lambda x: ("meets" if x and x["records_s"] <= 0.05 else "misses")  # noqa: E731
    return f"""
## Queries over {q['runs']:,} runs ({q['params']} params, {q['metrics']} metrics each)

`benchmarks/query.py`, medians of 7 after a warm-up, same machine, same data, on both record
stores: SQLite (the embedded default) and PostgreSQL 15 (a team's store: a local server
started as the tests start it, `VACUUM ANALYZE` after the bulk load, as autovacuum does).
Shared query: `--where "{q['shared_where']}" --sort {q['shared_sort']} --limit {q['limit']}`
({r['matches']:,} matches; MLflow's filter: `{m.get('filter', '-')}`, which must quote params
because MLflow stores them as strings{'; all return the same top runs' if q.get('same_top') and q.get('same_top_pg', True) else ''}).

| what | SQLite | PostgreSQL |
|---|---|---|
| hand-written joins over repro's tables (the floor) | {ms(r, 'floor_s')} | {ms(p, 'floor_s')} |
| repro query, ids (vs the floor) | {ms(r, 'ids_s', True)} | {ms(p, 'ids_s', True)} |
| repro query, full records (what `repro runs --json` reads; target <= 50 ms) | {ms(r, 'records_s', True)} {target(r)} | {ms(p, 'records_s', True)} {target(p)} |
| repro count of all matches | {ms(r, 'count_s')} | {ms(p, 'count_s')} |
| `repro ui`: one page (50 rows, second page) of the runs table over HTTP, with its total | {ms(r, 'dashboard_page_s')} | {ms(p, 'dashboard_page_s')} |
| numeric range on params (`{q['range_where']}`, sort params.lr; MLflow cannot express it) | {ms(r, 'range_s')} | {ms(p, 'range_s')} |
| parameter importance of `acc` over all {q['runs']:,} runs (a seeded sample of {r.get('importance_runs', 0):,}) | {ms(r, 'importance_s')} | {ms(p, 'importance_s')} |
| MLflow {m.get('version', '')} `search_runs`, same filter and order, on its own store of each kind | {ml(m, r)} | {ml(mp, p)} |

Populating took {q['repro_populate_s']:.0f} s on SQLite and {q.get('repro_pg_populate_s', 0):.0f} s on
PostgreSQL for repro (records validated and projected into the indexed tables, one
transaction; row by row over the connection on PostgreSQL); MLflow's rows were bulk-inserted
by the benchmark itself.
"""


def push_section(b: dict | None) -> str:
    if not b:
        return ""
    med = b["median"]
    return f"""
## Push of a run with a {b['size_mb']:,} MiB output

`benchmarks/push.py`, medians of {b['n']}, alternating: `repro push RUN` into a fresh
PostgreSQL database with the artifacts in a fresh shared folder (`file://`) or a real
registry (`oci://`, Debian's docker-registry on this machine), against the floors on the same
bytes. The image was in the registry already.

| what | repro push | floor | ratio |
|---|---|---|---|
| to a shared folder (hash while copying, fsync, rename) vs `cp` of the file | {med['push_folder']:.2f} s | {med['cp']:.2f} s | **{b['folder_ratio']:.2f}x** |
| the same vs `cp` then `sync` of the copy (the bytes on disk, as repro leaves them) | {med['push_folder']:.2f} s | {med['cp_sync']:.2f} s | **{b['folder_sync_ratio']:.2f}x** |
| to a registry (64 MiB chunks) vs one raw streamed blob upload | {med['push_registry']:.2f} s | {med['raw_upload']:.2f} s | **{b['registry_ratio']:.2f}x** |

`repro push` is a whole command: Python's start and repro's imports (about 0.7 s here), the
connection to the team's database, sha256 of every byte (in a thread beside the writes),
fsync, the record's transaction and the other artifacts of the run. `cp` verifies nothing and
the raw upload is handed its digest. The registry itself hashes what it receives, which is
why both registry rows are slow on two cores.
"""


def slurm_section(b: dict | None) -> str:
    if not b:
        return ""
    med = b["median"]
    ok = lambda r: "meets" if r <= 1.2 else "misses"  # noqa: E731
    return f"""
## Slurm (a real single-node cluster, {b['cpus']} cores)

`benchmarks/slurm.py`, medians, alternating; the floors run the same `docker run` of the
same image in a hand-written `sbatch --wrap`. `sbatch --wait` polls Slurm with sleeps of its
own (here it almost always returned after 10 s), so the second floor submits with `sbatch
--parsable` and polls `scontrol show job` every 0.5 s, as repro follows a run. The target is
<= 1.2x the floor.

| what | repro | `sbatch --wait` | ratio | sbatch + 0.5 s polling | ratio |
|---|---|---|---|---|---|
| `repro launch specs/hello.yaml --executor slurm` vs one job (n={b['n']}) | {med['launch']:.2f} s | {med['sbatch']:.2f} s | {b['launch_ratio']:.2f}x | {med['sbatch_polled']:.2f} s | **{b['launch_polled_ratio']:.2f}x** ({ok(b['launch_polled_ratio'])}) |
| a {b['points']}-point sweep as one job array vs {b['points']} separate jobs submitted at once | {med['sweep']:.2f} s | {med['separate']:.2f} s | {b['sweep_ratio']:.2f}x | {med['separate_polled']:.2f} s | **{b['sweep_polled_ratio']:.2f}x** ({ok(b['sweep_polled_ratio'])}) |

The single launch misses. It is two repro processes where the floor has none. On the
submitting side: Python start-up and imports (about 0.7 s), resolving (git status, the code
snapshot, the image), and the held submit, record and release. On the node, Python again,
fetching and checking the snapshot, capturing host facts, and storing the outputs and the
record, plus half a poll on average. A sweep spreads those costs over its points and stays
within the target.
"""


def launch_cost_section(c: dict | None, real: dict | None) -> str:
    if not c and not real:
        return ""
    text = """
## What a launch costs repro itself

"""
    if c:
        b = c["budgets"]
        over = ", ".join(c["over_budget"]) or "none"
        by = ", ".join(f"{k} {v:.0f} ms" for k, v in list(c["import_ms_by_package"].items())[:8])
        text += f"""`benchmarks/launch_cost.py`, medians of {c['n']} launches of `specs/hello.yaml --json`
(bytecode written and read, as an installed repro runs). `make bench` fails when one is over
its budget (over now: {over}).

| what | per launch | budget |
|---|---|---|
| CPU of the repro process and what it starts (git), user + system | {c['cpu_ms']:.0f} ms | |
| the docker CLI's CPU for `docker run --rm` of the same image and command | {c['docker_cli_cpu_ms']:.0f} ms | |
| Python importing the libraries a launch needs (pydantic, docker with requests, typer, yaml), nothing else | {c.get('libraries_cpu_ms', 0):.0f} ms | |
| the launch's CPU above that floor (what repro adds) | {c.get('own_cpu_ms', 0):.0f} ms | {b.get('own_cpu_ms', 0):.0f} ms |
| import time, the sum of every module's own (`python -X importtime`) | {c['import_ms']:.0f} ms | |
| of which repro's own modules | {c.get('orchestrator_import_ms', 0):.0f} ms | {b.get('orchestrator_import_ms', 0):.0f} ms |
| modules loaded | {c['modules']} | {b['modules']} |

By package: {by}.
"""
    if real:
        p = real["phases"]
        text += f"""
`benchmarks/realistic.py`: the second launch of a scikit-learn + pandas project (4 MiB of
tracked data, {real['outputs']} outputs), medians of {real['n']}, alternating with `docker run --rm` of the same
image and command in a copy of the project.

| what | time |
|---|---|
| `repro launch` | {real['repro_s']:.2f} s |
| the same job under `docker run` | {real['docker_s']:.2f} s |
| above the job's own time (target <= 1 s) | **{real['above_s']:.2f} s** |
| the job under `docker run` with `PYTHONPYCACHEPREFIX` set, as repro ran jobs before | {real['docker_no_pyc_s']:.2f} s |

Where the time goes in one traced launch: the first engine call at {p['first_engine_call'] * 1000:.0f} ms (Python,
imports, the spec, git, the snapshot and input hashes), the job started at
{p['job_start_call'] * 1000:.0f} ms (image facts, create), the job ended at {p['job_ended'] * 1000:.0f} ms, and the process at
{p['exit'] * 1000:.0f} ms (outputs stored, the record written).
"""
    return text


def diagnose_section(b: dict | None) -> str:
    if not b:
        return ""
    rows = "\n".join(
        f"| `{r['spec']}` ({', '.join(r['causes'])}) | {r['diagnose_s']:.2f} s "
        f"({r['replays_in_diagnosis']:g} replays) | {r['replay_s']:.2f} s | **{r['ratio']:.1f}x** |"
        f" {r.get('one_by_one_s', 0):.2f} s ({r.get('one_by_one_ratio', 0):.1f}x) |"
        for r in b["rows"])
    return f"""
## What a diagnosis costs

`benchmarks/diagnose.py`: `repro diagnose RUN` against `repro replay RUN` of the same run,
alternating, medians of {b['n']}. Each command is a whole process (Python start-up and imports,
paid once by each). A diagnosis is 2 plain replays, 2 with every control on, one
per control that applies, and one more when threads are implicated; controls already in force
(`determinism: strict` seeds and fixes the hash seed) are not run, so a strict run costs less.

| run (causes found) | `repro diagnose` | one `repro replay` | ratio | `-j 1` (one at a time) |
|---|---|---|---|---|
{rows}

Independent replays run side by side, as many as the host's CPUs and memory hold at the
run's `cpus` and memory (one with GPUs): the plain ones, then the controlled pair with every
factor let go. `async-sgd` asks for 2 CPUs on this 2-core machine, so its replays run one at
a time. A `repro replay` pays Python's start-up and imports, the store connection and the
engine client for one replay, a diagnosis pays them once for all of its replays.
"""


def partial_section(b: dict | None) -> str:
    if not b:
        return ""
    rows = "\n".join(f"| `repro verify RUN{'' if r['what'] == 'full' else ' ' + r['what']}` | "
                     f"{r['share']:.0%} | {r['s']:.2f} s | {r['ratio']:.2f}x |"
                     for r in b["rows"])
    return f"""
## Verifying part of a long run

`benchmarks/partial.py`: a job of {b['steps']:,} steps ({b['job_s']:.1f} s, a loss logged each
step, a checkpoint every {b['steps'] // 8:,}) launched once, then each kind of verify of it,
alternating, medians of {b['n']}; each time is the whole command, start-up included.

| command | share of the steps run | time | vs the full verify |
|---|---|---|---|
{rows}

A prefix costs the start-up (Python, the engine, the container: under a second here) plus its
share of the job; the job is stopped within about 0.1 s of its last step (the metrics file is
polled that often). A segment also places its checkpoint and waits for the next one.
"""


def charliecloud_section(b: dict | None) -> str:
    if not b:
        return ""
    la, un = b["launch"], b["unpack"]
    rows = "\n".join(f"| {k} | {v:.3f} s | {v / la['docker run']:.2f}x |" for k, v in la.items())
    ours, theirs = un["repro unpack (checked)"], un["docker export | tar -x"]
    return f"""
## Charliecloud against Docker

`benchmarks/charliecloud.py`: specs/hello.yaml, the image unpacked already, each command
alternating with the others, medians of {b['n']}.

| command | time | vs `docker run` |
|---|---|---|
{rows}

`ch-run` alone (as nobody, the code bound) is the floor; a repro launch under Charliecloud
adds Python's start-up, the record, the code snapshot, the namespaces and mounts, and the
image's facts (once per image). The first use of an image unpacks it from the store's
archive, every layer checked against its diff_id: {ours:.2f} s, against {theirs:.2f} s for
`docker create` + `docker export | tar -x` of the same image ({ours / theirs:.2f}x).
"""


def rewrite_store_sections(out: Path) -> None:
    text = out.read_text()
    q = json.loads((ROOT / "bench-out" / "query.json").read_text())
    b = json.loads((ROOT / "bench-out" / "push.json").read_text())
    sl = ROOT / "bench-out" / "slurm.json"
    s = json.loads(sl.read_text()) if sl.exists() else None
    dg = ROOT / "bench-out" / "diagnose.json"
    d = json.loads(dg.read_text()) if dg.exists() else None
    pa = ROOT / "bench-out" / "partial.json"
    pt = json.loads(pa.read_text()) if pa.exists() else None
    cc = ROOT / "bench-out" / "charliecloud.json"
    ch = json.loads(cc.read_text()) if cc.exists() else None
    for heading in ("\n## Queries over", "\n## Push of a run", "\n## Slurm",
                    "\n## What a diagnosis costs", "\n## Verifying part of a long run",
                    "\n## Charliecloud against Docker"):
        if heading in text:
            start = text.index(heading)
            end = text.find("\n## ", start + len(heading))
            text = text[:start] + text[end if end >= 0 else len(text):]
    cut = text.find("\n## ", text.index("| benchmark |"))
    text = (text[:cut] + query_section(q) + push_section(b) + slurm_section(s)
            + diagnose_section(d) + partial_section(pt) + charliecloud_section(ch) + text[cut:])
    out.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, 256 MiB ingest")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--before", help="a git ref whose launch is timed in the same run (the "
                    "code before a change)")
    ap.add_argument("--stores-only", action="store_true", help="rewrite only the query, "
                    "push, Slurm and diagnosis sections of --out from bench-out/query.json and push.json (after "
                    "running benchmarks/query.py and benchmarks/push.py)")
    args = ap.parse_args()
    if args.stores_only:
        rewrite_store_sections(args.out)
        return
    # bytecode written and read, as an installed repro runs (this machine sets
    # PYTHONDONTWRITEBYTECODE: every launch compiled repro from source)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    n = 5 if args.quick else 15
    with tempfile.TemporaryDirectory(prefix="repro-bench-") as t:
        tmp = Path(t)
        before = checkout(args.before, tmp) if args.before else None
        res = {"launch": (la := bench_launch(n, tmp, before)),
               "logs": bench_logs(la["image"], 3, tmp),
               "archive": bench_archive(la["image"], 3, tmp),
               "ingest": bench_ingest(256 if args.quick else 1024, 3, tmp),
               "help": bench_help(n), "imports": import_cost(),
               "query": _bench_script("query", ["--runs", "10000"], args.quick),
               "push": _bench_script("push", ["--size-mb", "256"], args.quick),
               "slurm": _bench_script("slurm", ["-n", "3"], args.quick),
               "diagnose": _bench_script("diagnose", ["-n", "1"], args.quick),
               "launch_cost": _bench_script("launch_cost", ["-n", "3"], args.quick),
               "realistic": _bench_script("realistic", ["-n", "2"], args.quick),
               "first_launch": _bench_script("first_launch", ["-n", "1"], args.quick),
               "partial": _bench_script("partial", ["-n", "1"], args.quick),
               "charliecloud": _bench_script("charliecloud", ["-n", "5"], args.quick),
               "before_ref": args.before}
        if before is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(before)], capture_output=True)
    report(res, args.out)
    over = (res.get("launch_cost") or {}).get("over_budget")
    if over:
        sys.exit(f"make bench: a launch is over its budget for {', '.join(over)} "
                 "(benchmarks/launch_cost.py; BENCHMARKS.md)")


if __name__ == "__main__":
    main()
