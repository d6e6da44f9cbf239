"""Query benchmark: 100,000 runs (10 params, 5 metrics each), a filtered and sorted query.

    python benchmarks/query.py [--runs 100000] [--out bench-out/query.json]

The same runs and queries on both record stores, SQLite (the embedded default) and
PostgreSQL 15 (a team's store; a real server started here as in the tests, tests/pg.py),
each compared in the same run with:
- a plain query written by hand over the same tables on the same database (the floor), and
- MLflow's `search_runs` on an SQLite-backed MLflow store holding the same runs, run in its own
  virtual environment (`.venv-bench`, created here; MLflow is never a dependency of repro).
  MLflow compares params as strings only (=, !=, LIKE, IN), so the shared query filters params
  by equality and metrics numerically. On PostgreSQL, MLflow's own SQLAlchemy store with
  psycopg2 (installed into .venv-bench).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.record import (  # noqa: E402
    CodeRef,
    ImageRef,
    ResolvedSpec,
    ResourcesRef,
    RunRecord,
    RunStatus,
)
from orchestrator.store import open_store  # noqa: E402
from orchestrator.store.query import parse_sort, parse_where  # noqa: E402

SHARED_WHERE = "params.optimizer = adam and params.batch = 64 and metrics.acc >= 0.9"
SHARED_SORT = "-metrics.acc"
RANGE_WHERE = "params.lr < 0.003 and params.dropout >= 0.2 and metrics.loss < 0.5"
LIMIT = 100
FLOOR_SQL = """
SELECT r.id FROM runs r
JOIN run_params po ON po.run_id = r.id AND po.name = 'optimizer' AND po.value_text = 'adam'
JOIN run_params pb ON pb.run_id = r.id AND pb.name = 'batch' AND pb.value_num = 64
JOIN run_metrics m ON m.run_id = r.id AND m.name = 'acc' AND m.value >= 0.9
ORDER BY m.value DESC, r.created_at DESC, r.id DESC LIMIT 100
"""


def make_runs(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    runs = []
    for i in range(n):
        params = {
            "lr": round(10 ** rng.uniform(-4, -1), 6), "batch": rng.choice([16, 32, 64, 128]),
            "optimizer": rng.choice(["adam", "sgd", "rmsprop"]),
            "hidden": rng.choice([64, 128, 256, 512]), "dropout": round(rng.uniform(0, .5), 3),
            "weight_decay": round(10 ** rng.uniform(-6, -2), 8), "layers": rng.randint(1, 8),
            "activation": rng.choice(["relu", "gelu", "tanh"]), "warmup": rng.randint(0, 2000),
            "seed": rng.randint(0, 2**31)}
        acc = min(0.999, max(0.0, 0.8 + 0.05 * math.log10(params["lr"] * 1e4) / 3
                             + rng.gauss(0, 0.06)))
        metrics = {"acc": acc, "loss": max(0.01, 1.2 - acc + rng.gauss(0, .05)),
                   "f1": acc - rng.uniform(0, .05), "precision": acc - rng.uniform(0, .03),
                   "recall": acc - rng.uniform(0, .06)}
        runs.append({"id": f"{i:016x}", "params": params, "metrics": metrics,
                     "created": 1_767_225_600 + i})
    return runs


def populate_repro(home: Path, runs: list[dict]) -> float:
    store = open_store(home)
    resolved = ResolvedSpec(
        image=ImageRef(digest="sha256:" + "1" * 64),
        code=CodeRef(path="/bench", snapshot="sha256:" + "2" * 64), command=["true"], seed=0,
        resources=ResourcesRef(cpus=1, threads=1, memory="1g", memory_bytes=1 << 30))
    t0 = time.perf_counter()
    records = (RunRecord(
        id=r["id"], name="bench", status=RunStatus.SUCCEEDED, exit_code=0, spec={},
        spec_digest="sha256:" + "3" * 64, resolved=resolved, params=r["params"],
        metrics=r["metrics"], created_at=time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                       time.gmtime(r["created"])),
        duration_s=1.0) for r in runs)
    store.runs.insert_many(records)
    if store.runs.db.dialect == "postgresql":
        # what autovacuum does soon after a bulk load: statistics and the visibility map
        store.runs.db.execute("VACUUM ANALYZE")
    store.close()
    return time.perf_counter() - t0


def median_time(fn, n: int = 7) -> tuple[float, object]:
    fn()  # warm the page cache and statement cache
    times, result = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_repro(home: Path) -> dict:
    store = open_store(home)
    shared, sort = parse_where(SHARED_WHERE), parse_sort(SHARED_SORT)
    t_ids, ids = median_time(lambda: store.runs.query_ids(shared, sort, LIMIT))
    t_full, recs = median_time(lambda: store.runs.query(shared, sort, LIMIT))
    t_range, range_ids = median_time(lambda: store.runs.query_ids(
        parse_where(RANGE_WHERE), parse_sort("params.lr"), LIMIT))
    t_floor, floor = median_time(lambda: [r[0] for r in store.runs.db.execute(FLOOR_SQL)])
    t_count, count = median_time(lambda: store.runs.query_count(shared))
    assert ids == floor, "repro's query and the hand-written SQL disagree"
    t_api, page = median_time(lambda: dashboard_page(home))
    from orchestrator.web import Api

    api = Api(home)
    t_imp, imp = median_time(lambda: api.importance({"metric": "acc", "where": ""}), n=3)
    return {"importance_s": t_imp, "importance_runs": imp["runs"], "ids_s": t_ids, "records_s": t_full, "range_s": t_range, "floor_s": t_floor,
            "count_s": t_count, "matches": count, "returned": len(ids),
            "top": ids[:5], "range_returned": len(range_ids), "records": len(recs),
            "dashboard_page_s": t_api, "dashboard_rows": page}


def dashboard_page(home: Path) -> int:
    """One page of the dashboard's runs table over HTTP, as the browser asks for it."""
    import threading
    import urllib.parse
    import urllib.request

    from orchestrator.web import make_server

    global _SERVER
    if _SERVER is None:
        _SERVER = make_server(home, "127.0.0.1", 0)
        threading.Thread(target=_SERVER.serve_forever, daemon=True).start()
    qs = urllib.parse.urlencode({"where": SHARED_WHERE, "sort": SHARED_SORT, "limit": 50,
                                 "offset": 50})
    with urllib.request.urlopen(f"http://127.0.0.1:{_SERVER.server_address[1]}/api/runs?{qs}"
                                ) as resp:
        return len(json.loads(resp.read())["runs"])


_SERVER = None


def ensure_mlflow_venv() -> Path | None:
    venv = ROOT / ".venv-bench"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(py), "-c", "import mlflow, psycopg2"], capture_output=True)
    if probe.returncode != 0:
        inst = subprocess.run([str(py), "-m", "pip", "install", "-q", "mlflow",
                               "psycopg2-binary"],
                              capture_output=True, text=True)
        if inst.returncode != 0:
            print(f"MLflow could not be installed: {inst.stderr.strip()[-500:]}",
                  file=sys.stderr)
            return None
    return py


def bench_mlflow(py: Path, runs_file: Path, work: Path, uri: str | None = None) -> dict:
    out = subprocess.run([str(py), str(ROOT / "benchmarks" / "mlflow_query.py"),
                          str(runs_file), str(work), *([uri] if uri else [])],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"MLflow benchmark failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "query.json")
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    runs = make_runs(args.runs)
    with tempfile.TemporaryDirectory(prefix="repro-qbench-") as t:
        tmp = Path(t)
        result = {"runs": args.runs, "params": 10, "metrics": 5, "shared_where": SHARED_WHERE,
                  "shared_sort": SHARED_SORT, "range_where": RANGE_WHERE, "limit": LIMIT}
        result["repro_populate_s"] = populate_repro(tmp / "repro", runs)
        result["repro"] = bench_repro(tmp / "repro")
        py = None if args.no_mlflow else ensure_mlflow_venv()
        if py is None:
            result["mlflow"] = {"error": "MLflow could not be installed or was skipped"}
        runs_file = tmp / "runs.json"
        if py is not None:
            runs_file.write_text(json.dumps(runs))
            result["mlflow"] = bench_mlflow(py, runs_file, tmp / "mlflow")
            if "top" in result["mlflow"]:
                result["same_top"] = result["mlflow"]["top"] == result["repro"]["top"]
        if not args.no_postgres:
            from tests import pg

            server = pg.start(tmp / "pg")
            try:
                server.create_db("bench")
                os.environ["REPRO_STORE"] = server.url(db="bench")
                result["repro_pg_populate_s"] = populate_repro(tmp / "repro-pg", runs)
                result["repro_pg"] = bench_repro(tmp / "repro-pg")
                global _SERVER
                _SERVER = None  # the dashboard over the PostgreSQL store next
                del os.environ["REPRO_STORE"]
                result["same_top_pg"] = result["repro_pg"]["top"] == result["repro"]["top"]
                if py is not None:
                    server.create_db("mlflow")
                    result["mlflow_pg"] = bench_mlflow(py, runs_file, tmp / "mlflow-pg",
                                                       server.url(db="mlflow"))
            finally:
                server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
