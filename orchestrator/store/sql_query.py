"""The ``--where`` tree (``query.py``) compiled to SQL over the store's indexed tables, for
SQLite or PostgreSQL (``db.py`` says which: its ``like`` operator and whether a unary ``+``
keeps an index out of a plan).

Conditions on params/metrics/tags/notes live in side tables. Each can be written two ways:
"in" (``runs.id IN (SELECT run_id ...)``: one index range scan, good for selective terms and
for counting) or "exists" (a primary-key probe per candidate run: good when the runs are
walked in sort order and the LIMIT stops the walk early). ``RunStore.query_ids`` picks per
query. Placeholders are ``?`` for both (the PostgreSQL connection rewrites them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .query import COLUMNS, NUMERIC_COLUMNS, Bool, Compare, Node, Not, Present, Where

SIDE = {"params": ("run_params", "name"), "metrics": ("run_metrics", "name"),
        "tags": ("run_tags", "key"), "note": ("run_notes", None)}
CONTAINS = {"params": "value_text", "tags": "value", "note": "text",
            "metrics": "CAST(value AS TEXT)"}


class SqlNode:
    def sql(self, driver: Cond | None = None, fence: str = "") -> tuple[str, list[object]]:
        """SQL and its arguments; ``driver`` is the condition that drives the query (its set
        form), ``fence`` ends each EXISTS probe (the database's way of keeping a probe a
        probe, evaluated per row in the order of a walk, not flattened into a join)."""
        raise NotImplementedError

    def conjuncts(self) -> list[SqlNode]:
        return [self]


@dataclass(frozen=True)
class Cond(SqlNode):
    """One condition. ``table`` is None for a column of ``runs``."""

    pred: str  # over the side table's columns, or with {col} for a column of runs
    args: tuple[object, ...]
    table: str | None = None
    negated: bool = False  # "is null": no row in the side table
    column: str | None = None  # runs.status, ... for a column condition
    plus: bool = True  # the database reads "+col" as "not by its index" (SQLite)

    def sql(self, driver: Cond | None = None, fence: str = "") -> tuple[str, list[object]]:
        if self.column is not None:
            # a unary + keeps SQLite from using the column's index unless this condition
            # drives the query: then the walk in sort order (and LIMIT) is what it takes
            col = self.column if self is driver or not self.plus else f"+{self.column}"
            return self.pred.format(col=col), list(self.args)
        if self is driver:
            return f"runs.id IN (SELECT run_id FROM {self.table} WHERE {self.pred})", list(
                self.args)
        exists = (f"EXISTS (SELECT 1 FROM {self.table} WHERE run_id = runs.id AND "
                  f"{self.pred}{fence})")
        return (f"NOT {exists}" if self.negated else exists), list(self.args)

    def in_sql(self) -> tuple[str, list[object]]:
        """The set form (for counting and for driving a query)."""
        if self.negated:
            return self.sql()
        return self.sql(driver=self)

    def estimate_sql(self, cap: int) -> tuple[str, list[object]] | None:
        """Counts matching rows, up to ``cap`` (cheap when an index covers the condition)."""
        if self.negated:
            return None
        if self.column is not None:
            pred, table = self.pred.format(col=self.column), "runs"
        else:
            pred, table = self.pred, str(self.table)
        return (f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {pred} LIMIT {int(cap)}) "
                "AS hits", list(self.args))


@dataclass(frozen=True)
class SqlBool(SqlNode):
    op: str  # AND / OR
    parts: tuple[SqlNode, ...]

    def sql(self, driver: Cond | None = None, fence: str = "") -> tuple[str, list[object]]:
        frags = [p.sql(driver, fence) for p in self.parts]
        return ("(" + f" {self.op} ".join(f for f, _ in frags) + ")",
                [a for _, args in frags for a in args])

    def conjuncts(self) -> list[SqlNode]:
        if self.op != "AND":
            return [self]
        return [c for p in self.parts for c in p.conjuncts()]


@dataclass(frozen=True)
class SqlNot(SqlNode):
    part: SqlNode

    def sql(self, driver: Cond | None = None, fence: str = "") -> tuple[str, list[object]]:
        frag, args = self.part.sql(None, fence)
        return f"(NOT {frag})", args


@dataclass(frozen=True)
class Compiled:
    """A --where expression as SQL."""

    root: SqlNode | None

    def sql(self, driver: Cond | None = None, fence: str = "") -> tuple[str, list[object]]:
        return self.root.sql(driver, fence) if self.root else ("TRUE", [])

    def count_sql(self) -> tuple[str, list[object]]:
        """Set form everywhere at the top level: index range scans, then intersect."""
        if self.root is None:
            return "TRUE", []
        frags = [c.in_sql() if isinstance(c, Cond) else c.sql() for c in self.conjuncts()]
        return " AND ".join(f for f, _ in frags), [a for _, args in frags for a in args]

    def conjuncts(self) -> list[SqlNode]:
        return self.root.conjuncts() if self.root else []


def compile_where(where: Where | None, db: Any = None) -> Compiled:
    """``where`` as SQL for ``db`` (a ``db.Db``; default SQLite's dialect)."""
    dialect = _Dialect(getattr(db, "like", "LIKE"), getattr(db, "plus_hides_index", True))
    return Compiled(dialect.node(where.root) if where is not None and where.root else None)


@dataclass(frozen=True)
class _Dialect:
    like: str
    plus: bool

    def node(self, node: Node) -> SqlNode:
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, Present):
            return self.present(node)
        if isinstance(node, Bool):
            return SqlBool(node.op, tuple(self.node(p) for p in node.parts))
        if isinstance(node, Not):
            return SqlNot(self.node(node.part))
        raise TypeError(f"not a --where node: {node!r}")

    def column(self, pred: str, args: tuple[object, ...], name: str) -> Cond:
        return Cond(pred, args, column=f"runs.{COLUMNS[name]}", plus=self.plus)

    def present(self, node: Present) -> Cond:
        f = node.field
        if f.kind == "column":
            return self.column(f"{{col}} IS {'' if node.missing else 'NOT '}NULL", (), f.name)
        pred = "value IS NOT NULL" if f.kind == "metrics" else "TRUE"
        return _side(f.kind, f.name, pred, [], negated=node.missing)

    def compare(self, node: Compare) -> Cond:
        f, op, v = node.field, node.op, node.value
        if op == "~":  # contains, case-insensitive; % and _ are themselves, not wildcards
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", v.text) + "%"
            if f.kind == "column":
                return self.column(f"{{col}} {self.like} ? ESCAPE '\\'", (pattern,), f.name)
            return _side(f.kind, f.name, f"{CONTAINS[f.kind]} {self.like} ? ESCAPE '\\'",
                         [pattern])
        if f.kind == "params":
            col, arg = ("value_num", v.number) if v.number is not None else ("value_text",
                                                                             v.text)
            return _side(f.kind, f.name, f"{col} {op} ?", [arg])
        if f.kind == "metrics":
            return _side(f.kind, f.name, f"value {op} ?", [v.number])
        if f.kind == "tags":
            return _side(f.kind, f.name, f"value {op} ?", [v.text])
        arg = v.number if f.name in NUMERIC_COLUMNS and v.number is not None else v.text
        return self.column(f"{{col}} {op} ?", (arg,), f.name)


def _side(kind: str, name: str, pred: str, args: list[object], negated: bool = False) -> Cond:
    table, key = SIDE[kind]
    if key:
        pred, args = f"{key} = ? AND {pred}", [name, *args]
    return Cond(pred, tuple(args), table, negated)
