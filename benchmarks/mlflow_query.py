"""MLflow side of benchmarks/query.py; runs inside .venv-bench (which has MLflow).

    python mlflow_query.py RUNS.json WORKDIR   -> prints timings as JSON

The runs are written into an SQLite-backed MLflow tracking store in bulk (one run goes through
MLflow's API first so MLflow creates and migrates its schema and we copy its row layout); the
timed part is `MlflowClient.search_runs` with the same filter and order as repro's query.
"""

import json
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

FILTER = "params.optimizer = 'adam' and params.batch = '64' and metrics.acc >= 0.9"
ORDER = ["metrics.acc DESC"]


def main() -> None:
    runs = json.loads(Path(sys.argv[1]).read_text())
    work = Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "mlflow.db"
    uri = f"sqlite:///{db_path}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.create_experiment("bench", artifact_location=str(work / "artifacts"))
    template = client.create_run(exp)
    client.log_param(template.info.run_id, "x", "1")
    client.log_metric(template.info.run_id, "m", 1.0)
    client.set_terminated(template.info.run_id)
    db = sqlite3.connect(db_path)
    cols = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
    row = dict(zip(cols, db.execute("SELECT * FROM runs").fetchone(), strict=True))
    db.execute("DELETE FROM params")
    db.execute("DELETE FROM metrics")
    db.execute("DELETE FROM latest_metrics")
    db.execute("DELETE FROM tags")
    db.execute("DELETE FROM runs")
    t0 = time.perf_counter()
    run_rows, param_rows, metric_rows, latest_rows = [], [], [], []
    for r in runs:
        uuid = r["id"] + "0" * 16
        ms = r["created"] * 1000
        run_rows.append({**row, "run_uuid": uuid, "name": f"run-{r['id']}",
                         "start_time": ms, "end_time": ms + 1000,
                         "artifact_uri": f"{work}/artifacts/{uuid}"})
        param_rows += [(k, str(v), uuid) for k, v in r["params"].items()]
        metric_rows += [(k, v, ms, uuid, 0, 0) for k, v in r["metrics"].items()]
        latest_rows += [(k, v, ms, 0, 0, uuid) for k, v in r["metrics"].items()]
    with db:
        db.executemany(f"INSERT INTO runs ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))})",
                       [tuple(x[c] for c in cols) for x in run_rows])
        db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                       param_rows)
        db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                       "VALUES (?, ?, ?, ?, ?, ?)", metric_rows)
        db.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, "
                       "run_uuid) VALUES (?, ?, ?, ?, ?, ?)", latest_rows)
    populate = time.perf_counter() - t0
    db.close()

    def search():
        return client.search_runs([exp], filter_string=FILTER, order_by=ORDER,
                                  max_results=100)

    search()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        found = search()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"version": mlflow.__version__, "populate_s": populate,
                      "search_s": statistics.median(times), "returned": len(found),
                      "top": [r.info.run_id[:16] for r in found[:5]],
                      "filter": FILTER, "order_by": ORDER}))


if __name__ == "__main__":
    main()
