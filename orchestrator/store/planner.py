"""The query planner of ``RunStore``: which index drives a ``--where`` query and its sort,
so a listing of 100,000 runs reads only the rows it shows."""

from __future__ import annotations

import math

from .query import COLUMNS as COLUMNS_BY_FIELD
from .query import Sort, Where
from .rows import SqlRows
from .sql_query import Compiled, Cond, compile_where


class QueryPlanner(SqlRows):
    def query_ids(self, where: Where | None = None, sort: Sort | None = None,
                  limit: int | None = None) -> list[str]:
        """Ids in sort order. The plan: when one condition is selective, drive the query from
        its index range (then sort the few matches); otherwise walk the sort key's index and
        probe each run's conditions, letting LIMIT stop the walk early."""
        compiled = compile_where(where, self.db)
        sort = sort or Sort("column", "created_at", True)
        direction = "DESC" if sort.descending else "ASC"
        driver = self._selective_condition(compiled, limit)
        if driver is not None or sort.kind == "column" or not limit:
            return self._ids_sorted_after(compiled, driver, sort, direction, limit)
        ids: list[str] = []
        cond, args = compiled.sql(fence=self.db.probe_fence)  # probes in the walk's order
        for table, key, extra in _sort_phases(sort):
            if len(ids) >= limit:
                break
            rows = self.db.execute(
                f"SELECT runs.id FROM {table} s {self.db.ordered_join} runs ON "
                f"runs.id = s.run_id "
                f"WHERE s.name = ? AND {extra} AND {cond} "
                f"ORDER BY s.{key} {direction}, s.run_id {direction} LIMIT ?",
                [sort.name, *args, limit - len(ids)])
            ids += [r[0] for r in rows]
        if len(ids) < limit:  # runs without the sort key come last, newest first
            table = "run_metrics" if sort.kind == "metrics" else "run_params"
            present = "value IS NOT NULL" if sort.kind == "metrics" else "TRUE"
            rows = self.db.execute(
                f"SELECT runs.id FROM runs WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE "
                f"run_id = runs.id AND name = ? AND {present}) AND {cond} "
                f"ORDER BY runs.created_at DESC, runs.{self.db.rowid} DESC LIMIT ?",
                [sort.name, *args, limit - len(ids)])
            ids += [r[0] for r in rows]
        return ids

    def _ids_sorted_after(self, where: Compiled, driver: Cond | None, sort: Sort,
                          direction: str, limit: int | None) -> list[str]:
        cond, args = where.sql(driver)
        join, jargs = "", []
        rowid = f"runs.{self.db.rowid}"
        if sort.kind == "column":
            col = f"runs.{COLUMNS_BY_FIELD[sort.name]}"
            order = f"{col} IS NULL, {col} {direction}, {rowid} {direction}"
            if sort.name == "created_at":  # served by its index, so LIMIT stops early
                order = f"runs.created_at {direction}, {rowid} {direction}"
        else:
            table = "run_metrics" if sort.kind == "metrics" else "run_params"
            join = f" LEFT JOIN {table} s ON s.run_id = runs.id AND s.name = ?"
            jargs = [sort.name]
            if sort.kind == "metrics":
                key = f"s.value IS NULL, s.value {direction}"
            else:  # numbers before text ascending, text first descending (SQLite's order)
                key = (f"s.run_id IS NULL, s.value_num IS NULL {direction}, "
                       f"s.value_num {direction}, s.value_text {direction}")
            order = f"{key}, runs.created_at DESC, {rowid} DESC"
        sql = f"SELECT runs.id FROM runs{join} WHERE {cond} ORDER BY {order}"
        params: list[object] = [*jargs, *args]
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [r[0] for r in self.db.execute(sql, params)]

    def _selective_condition(self, where: Compiled, limit: int | None) -> Cond | None:
        """The condition with the fewest matching rows, if few enough that driving the query
        from it beats walking an index in sort order (about sqrt(limit * runs) rows)."""
        conds = [c for c in where.conjuncts() if isinstance(c, Cond)]
        if not conds:
            return None
        total = self.db.execute(f"SELECT max({self.db.rowid}) FROM runs").fetchone()[0] or 0
        cap = max(1000, int(2 * math.sqrt((limit or total) * max(total, 1))))
        best, best_n = None, cap
        for c in conds:
            est = c.estimate_sql(cap)
            if est is None:
                continue
            n = self.db.execute(*est).fetchone()[0]
            if n < best_n:
                best, best_n = c, n
        return best


def _sort_phases(sort: Sort) -> list[tuple[str, str, str]]:
    """(table, key column, filter) walked in order for an EAV sort key: numbers, then text."""
    if sort.kind == "metrics":
        return [("run_metrics", "value", "s.value IS NOT NULL")]
    phases = [("run_params", "value_num", "s.value_num IS NOT NULL"),
              ("run_params", "value_text", "s.value_num IS NULL")]
    return phases[::-1] if sort.descending else phases  # SQLite sorts numbers before text
