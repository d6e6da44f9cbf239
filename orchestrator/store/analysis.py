"""Analysis reads of the record store (SQLite or PostgreSQL: portable SQL): the dashboard's
sweep grouping, importance samples, and the names of every param, metric and tag: the
``AnalysisReads`` of the record-store protocol, as ``RunStore`` implements them. Callers use
the methods (``store.runs.sweep_groups(...)``), never these functions.
"""

from __future__ import annotations

import random

from .query import Where
from .runs import RunStore, param_value
from .sql_query import compile_where


def sweep_groups(runs: RunStore, where: Where, metric: str | None = None, limit: int = 50,
                 offset: int = 0) -> tuple[int, list[dict[str, object]]]:
    """The sweeps that have runs matching ``where``, newest first, one summary each:
    (how many sweeps match, [{sweep, name, runs, succeeded, active, failed, created_at,
    min, max}]), where min/max are ``metrics.<metric>`` over the matching runs."""
    cond, args = compile_where(where, runs.db).count_sql()
    total = runs.db.execute(
        f"SELECT count(DISTINCT runs.sweep_id) FROM runs WHERE runs.sweep_id IS NOT NULL "
        f"AND {cond}", args).fetchone()[0]
    join, jargs = "", []
    lo_hi = "NULL, NULL"
    if metric:
        join = " LEFT JOIN run_metrics m ON m.run_id = runs.id AND m.name = ?"
        jargs, lo_hi = [metric], "min(m.value), max(m.value)"
    rows = runs.db.execute(
        "SELECT runs.sweep_id, sw.name, count(*), "
        "sum(CASE WHEN runs.status = 'succeeded' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN runs.status IN ('pending', 'queued', 'running') THEN 1 ELSE 0 END), "
        "min(runs.created_at), "
        f"{lo_hi} FROM runs{join} LEFT JOIN sweeps sw ON sw.id = runs.sweep_id "
        f"WHERE runs.sweep_id IS NOT NULL AND {cond} GROUP BY runs.sweep_id, sw.name "
        "ORDER BY min(runs.created_at) DESC, runs.sweep_id LIMIT ? OFFSET ?",
        [*jargs, *args, limit, offset])
    return total, [{"sweep": r[0], "name": r[1], "runs": r[2], "succeeded": r[3],
                    "active": r[4], "failed": r[2] - r[3] - r[4], "created_at": r[5],
                    "min": r[6], "max": r[7]} for r in rows]



def importance_samples(runs: RunStore, where: Where, metric: str, at_most: int | None = None
                       ) -> tuple[list[tuple[dict[str, object], float]], int]:
    """(params, metric value) of the succeeded runs matching ``where`` that report
    ``metric``, read from the indexed side tables (no record is parsed), and how many
    such runs there are. With ``at_most``, a seeded uniform sample of that many: the
    params of 100,000 runs are a million rows, several seconds to read here."""
    cond, args = compile_where(where, runs.db).count_sql()
    values = dict(runs.db.execute(
        "SELECT runs.id, m.value FROM runs JOIN run_metrics m ON m.run_id = runs.id AND "
        f"m.name = ? WHERE m.value IS NOT NULL AND runs.status = 'succeeded' AND {cond}",
        [metric, *args]))
    ids = sorted(values)
    total = len(ids)
    if at_most is not None and total > at_most:
        ids = sorted(random.Random(0).sample(ids, at_most))
    params: dict[str, dict[str, object]] = {rid: {} for rid in ids}
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        for rid, name, num, text in runs.db.execute(
                "SELECT run_id, name, value_num, value_text FROM run_params WHERE run_id "
                f"IN ({', '.join('?' * len(chunk))})", chunk):
            params[rid][name] = param_value(num, text)
    return [(params[rid], values[rid]) for rid in ids], total



def names(runs: RunStore) -> dict[str, list[str]]:
    """Every param, metric and tag name in the store (for column pickers)."""
    def distinct(table: str, col: str) -> list[str]:
        # a loose index scan: one index probe per distinct name, not one per row
        return [r[0] for r in runs.db.execute(
            f"WITH RECURSIVE n(v) AS (SELECT min({col}) FROM {table} UNION ALL "
            f"SELECT (SELECT min({col}) FROM {table} WHERE {col} > n.v) FROM n "
            "WHERE n.v IS NOT NULL) SELECT v FROM n WHERE v IS NOT NULL")]

    return {"params": distinct("run_params", "name"),
            "metrics": distinct("run_metrics", "name"),
            "tags": distinct("run_tags", "key")}
