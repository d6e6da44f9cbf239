"""MLflow side of benchmarks/query.py; runs inside .venv-bench (which has MLflow).

    python mlflow_query.py RUNS.json WORKDIR [postgresql://...]   -> prints timings as JSON

The runs are written into an MLflow tracking store (SQLite in WORKDIR, or the PostgreSQL
database given) in bulk (one run goes through MLflow's API first so MLflow creates and
migrates its schema and we copy its row layout); the timed part is
`MlflowClient.search_runs` with the same filter and order as repro's query.
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
    uri = sys.argv[3] if len(sys.argv) > 3 else f"sqlite:///{db_path}"
    tracking = uri.replace("postgresql://", "postgresql+psycopg2://")  # SQLAlchemy's driver
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient(tracking)
    exp = client.create_experiment("bench", artifact_location=str(work / "artifacts"))
    template = client.create_run(exp)
    client.log_param(template.info.run_id, "x", "1")
    client.log_metric(template.info.run_id, "m", 1.0)
    client.set_terminated(template.info.run_id)
    if uri.startswith("postgresql"):
        import psycopg2
        from psycopg2.extras import execute_values

        db = psycopg2.connect(uri)
        mark = "%s"
    else:
        db = sqlite3.connect(db_path)
        mark = "?"
    cur = db.cursor()
    cur.execute("SELECT * FROM runs")
    cols = [d[0] for d in cur.description]
    row = dict(zip(cols, cur.fetchone(), strict=True))
    for table in ("params", "metrics", "latest_metrics", "tags", "runs"):
        cur.execute(f"DELETE FROM {table}")
    t0 = time.perf_counter()
    run_rows, param_rows, metric_rows, latest_rows = [], [], [], []
    for r in runs:
        uuid = r["id"] + "0" * 16
        ms = r["created"] * 1000
        run_rows.append({**row, "run_uuid": uuid, "name": f"run-{r['id']}",
                         "start_time": ms, "end_time": ms + 1000,
                         "artifact_uri": f"{work}/artifacts/{uuid}"})
        param_rows += [(k, str(v), uuid) for k, v in r["params"].items()]
        metric_rows += [(k, v, ms, uuid, 0, False) for k, v in r["metrics"].items()]
        latest_rows += [(k, v, ms, 0, False, uuid) for k, v in r["metrics"].items()]
    inserts = [
        (f"INSERT INTO runs ({', '.join(cols)}) VALUES", [tuple(x[c] for c in cols)
                                                          for x in run_rows], len(cols)),
        ("INSERT INTO params (key, value, run_uuid) VALUES", param_rows, 3),
        ("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES",
         metric_rows, 6),
        ("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES",
         latest_rows, 6)]
    for head, rows, n in inserts:
        if mark == "%s":
            execute_values(cur, f"{head} %s", rows, page_size=5000)
        else:
            cur.executemany(f"{head} ({', '.join('?' * n)})", rows)
    db.commit()
    if mark == "%s":
        db.autocommit = True
        cur.execute("ANALYZE")
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
