"""The ``--where`` language, compiled to SQL over the store's indexed tables.

    params.lr < 0.1 and metrics.acc >= 0.9
    status = succeeded and (tags.team = vision or name ~ mlp)
    created_at >= 2026-11-01 and params.arch in (mlp, cnn) and not metrics.loss is null

Fields: ``params.NAME``, ``metrics.NAME``, ``tags.KEY``, ``status``, ``name``, ``id``,
``created_at``, ``started_at``, ``finished_at``, ``duration_s``, ``exit_code``, ``sweep``,
``replay_of``, ``note``. Operators: ``= == != < <= > >=``, ``~`` (contains, case-insensitive),
``in (a, b)``, ``is null``, ``is not null``; ``and``, ``or``, ``not`` and parentheses. Values:
numbers, quoted strings, or bare words (``succeeded``, ``2026-11-01``, ``digits-mlp``).
A param compared with a number compares numerically, with a word or string textually.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

COLUMNS = {"status": "status", "name": "name", "id": "id", "created_at": "created_at",
           "started_at": "started_at", "finished_at": "finished_at",
           "duration_s": "duration_s", "exit_code": "exit_code", "sweep": "sweep_id",
           "replay_of": "replay_of"}
NUMERIC_COLUMNS = {"duration_s", "exit_code"}
OPS = {"=": "=", "==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<op>==|!=|<=|>=|=|<|>|~)
  | (?P<paren>[(),])
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.:-]))
  | (?P<word>[A-Za-z0-9_][A-Za-z0-9_.:+/-]*)
""", re.X)
KEYWORDS = {"and", "or", "not", "in", "is", "null"}
MAX_LENGTH = 4000  # characters of an expression (it may come from a dashboard request)
MAX_TOKENS = 600  # SQLite limits expression depth and host parameters
MAX_NESTING = 40  # parentheses and `not`s inside each other


@dataclass(frozen=True)
class Tok:
    kind: str  # op paren str num word kw end
    text: str
    pos: int


class QueryError(UsageError):
    pass


def tokenize(text: str) -> list[Tok]:
    if len(text) > MAX_LENGTH:
        raise QueryError(f"--where: the expression is {len(text)} characters, more than "
                         f"{MAX_LENGTH}; narrow it (tags or a sweep id select many runs)")
    toks, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise _error(text, pos, f"unexpected {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            if kind == "word" and value.lower() in KEYWORDS:
                kind, value = "kw", value.lower()
            toks.append(Tok(kind, value, pos))
        pos = m.end()
        if len(toks) > MAX_TOKENS:
            raise _error(text, pos, f"more than {MAX_TOKENS} terms")
    toks.append(Tok("end", "", len(text)))
    return toks


def _error(text: str, pos: int, what: str) -> QueryError:
    near = f" (near {text[pos:pos + 20]!r})" if pos < len(text) else ""
    return QueryError(f"--where {text!r}: {what} at column {pos + 1}{near}")


# -- the expression tree ------------------------------------------------------------------------
# Conditions on params/metrics/tags/notes live in side tables. Each can be written two ways:
# "in" (runs.id IN (SELECT run_id ...): one index range scan, good for selective terms and for
# counting) or "exists" (a primary-key probe per candidate run: good when the runs are walked in
# sort order and the LIMIT stops the walk early). The store picks per query (see RunStore).


class Node:
    def sql(self, driver: Cond | None = None) -> tuple[str, list[object]]:
        raise NotImplementedError

    def conjuncts(self) -> list[Node]:
        return [self]


@dataclass(frozen=True)
class Cond(Node):
    """One condition. ``table`` is None for a column of ``runs``."""

    pred: str  # over the side table's columns, or with {col} for a column of runs
    args: tuple[object, ...]
    table: str | None = None
    negated: bool = False  # "is null": no row in the side table
    column: str | None = None  # runs.status, ... for a column condition

    def sql(self, driver: Cond | None = None) -> tuple[str, list[object]]:
        if self.column is not None:
            # a unary + keeps SQLite from using the column's index unless this condition
            # drives the query: then the walk in sort order (and LIMIT) is what it takes
            col = self.column if self is driver else f"+{self.column}"
            return self.pred.format(col=col), list(self.args)
        if self is driver:
            return f"runs.id IN (SELECT run_id FROM {self.table} WHERE {self.pred})", list(
                self.args)
        exists = f"EXISTS (SELECT 1 FROM {self.table} WHERE run_id = runs.id AND {self.pred})"
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
            pred, table = self.pred, self.table
        return (f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {pred} LIMIT {int(cap)})",
                list(self.args))


@dataclass(frozen=True)
class Bool(Node):
    op: str  # AND / OR
    parts: tuple[Node, ...]

    def sql(self, driver: Cond | None = None) -> tuple[str, list[object]]:
        frags = [p.sql(driver) for p in self.parts]
        return ("(" + f" {self.op} ".join(f for f, _ in frags) + ")",
                [a for _, args in frags for a in args])

    def conjuncts(self) -> list[Node]:
        if self.op != "AND":
            return [self]
        return [c for p in self.parts for c in p.conjuncts()]


@dataclass(frozen=True)
class Not(Node):
    part: Node

    def sql(self, driver: Cond | None = None) -> tuple[str, list[object]]:
        frag, args = self.part.sql()
        return f"(NOT {frag})", args


@dataclass(frozen=True)
class Where:
    """A compiled --where expression."""

    root: Node | None

    def sql(self, driver: Cond | None = None) -> tuple[str, list[object]]:
        return self.root.sql(driver) if self.root else ("1", [])

    def count_sql(self) -> tuple[str, list[object]]:
        """Set form everywhere at the top level: index range scans, then intersect."""
        if self.root is None:
            return "1", []
        frags = [c.in_sql() if isinstance(c, Cond) else c.sql() for c in self.conjuncts()]
        return " AND ".join(f for f, _ in frags), [a for _, args in frags for a in args]

    def conjuncts(self) -> list[Node]:
        return self.root.conjuncts() if self.root else []

    def and_(self, other: Where) -> Where:
        """Both expressions (a filter narrowed by the dashboard, say)."""
        if self.root is None or other.root is None:
            return self if other.root is None else other
        return Where(Bool("AND", (self.root, other.root)))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def take(self, kind: str, text: str | None = None) -> Tok | None:
        t = self.tok
        if t.kind == kind and (text is None or t.text == text):
            self.i += 1
            return t
        return None

    def expect(self, kind: str, what: str, text: str | None = None) -> Tok:
        t = self.take(kind, text)
        if t is None:
            raise _error(self.text, self.tok.pos, f"expected {what}, got {self._got()}")
        return t

    def _got(self) -> str:
        return f"{self.tok.text!r}" if self.tok.kind != "end" else "the end"

    def parse(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise _error(self.text, self.tok.pos, f"unexpected {self.tok.text!r}")
        return node

    def or_(self) -> Node:
        parts = [self.and_()]
        while self.take("kw", "or"):
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else Bool("OR", tuple(parts))

    def and_(self) -> Node:
        parts = [self.not_()]
        while self.take("kw", "and"):
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else Bool("AND", tuple(parts))

    def not_(self) -> Node:
        if not (self.tok.kind == "kw" and self.tok.text == "not" or self.tok.text == "("):
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _error(self.text, self.tok.pos, f"nested more than {MAX_NESTING} deep")
        try:
            if self.take("kw", "not"):
                return Not(self.not_())
            self.expect("paren", "'('", "(")
            node = self.or_()
            self.expect("paren", "')'", ")")
            return node
        finally:
            self.depth -= 1

    def value(self) -> Tok:
        t = self.tok
        if t.kind in ("num", "str", "word"):
            self.i += 1
            return t
        raise _error(self.text, t.pos, f"expected a value, got {self._got()}")

    def comparison(self) -> Node:
        ftok = self.tok
        if ftok.kind != "word":
            raise _error(self.text, ftok.pos, "expected a field (params.X, metrics.X, tags.X, "
                         f"status, name, created_at, ...), got {self._got()}")
        self.i += 1
        field = Field.parse(ftok, self.text)
        if self.take("kw", "is"):
            negate = bool(self.take("kw", "not"))
            self.expect("kw", "'null'", "null")
            return field.present(not negate)
        if self.take("kw", "in"):
            self.expect("paren", "'(' after in", "(")
            values = [self.value()]
            while self.take("paren", ","):
                values.append(self.value())
            self.expect("paren", "')'", ")")
            parts = tuple(field.compare("=", v) for v in values)
            return parts[0] if len(parts) == 1 else Bool("OR", parts)
        op = self.tok
        if op.kind != "op":
            raise _error(self.text, op.pos, "expected an operator (= != < <= > >= ~ in is) "
                         f"after {ftok.text}, got {self._got()}")
        self.i += 1
        return field.compare(op.text, self.value())


SIDE = {"params": ("run_params", "name"), "metrics": ("run_metrics", "name"),
        "tags": ("run_tags", "key"), "note": ("run_notes", None)}


@dataclass(frozen=True)
class Field:
    kind: str  # params metrics tags column note
    name: str

    @classmethod
    def parse(cls, tok: Tok, text: str) -> Field:
        head, dot, rest = tok.text.partition(".")
        if head in ("params", "metrics", "tags") and dot and rest:
            return cls(head, rest)
        if tok.text in COLUMNS:
            return cls("column", tok.text)
        if tok.text == "note":
            return cls("note", "")
        raise _error(text, tok.pos, f"unknown field {tok.text!r} (use params.NAME, "
                     f"metrics.NAME, tags.KEY, note, {', '.join(COLUMNS)})")

    def _side(self, pred: str, args: list[object], negated: bool = False) -> Cond:
        table, key = SIDE[self.kind]
        if key:
            pred, args = f"{key} = ? AND {pred}", [self.name, *args]
        return Cond(pred, tuple(args), table, negated)

    def present(self, missing: bool) -> Cond:
        """``is null`` (missing=True) or ``is not null``."""
        if self.kind == "column":
            return Cond(f"{{col}} IS {'' if missing else 'NOT '}NULL", (),
                        column=f"runs.{COLUMNS[self.name]}")
        pred = "value IS NOT NULL" if self.kind == "metrics" else "1"
        return self._side(pred, [], negated=missing)

    def compare(self, op: str, v: Tok) -> Cond:
        number = float(v.text) if v.kind == "num" else None
        text = v.text[1:-1] if v.kind == "str" else v.text
        if op == "~":  # contains, case-insensitive; % and _ are themselves, not wildcards
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
            if self.kind == "column":
                return Cond("{col} LIKE ? ESCAPE '\\'", (pattern,),
                            column=f"runs.{COLUMNS[self.name]}")
            col = {"params": "value_text", "tags": "value", "note": "text",
                   "metrics": "CAST(value AS TEXT)"}[self.kind]
            return self._side(f"{col} LIKE ? ESCAPE '\\'", [pattern])
        sql_op = OPS[op]
        if self.kind == "params":
            col, arg = ("value_num", number) if number is not None else ("value_text", text)
            return self._side(f"{col} {sql_op} ?", [arg])
        if self.kind == "metrics":
            if number is None:
                raise QueryError(f"--where: metrics.{self.name} is numeric; compare it with a "
                                 f"number, not {v.text!r}")
            return self._side(f"value {sql_op} ?", [number])
        if self.kind == "tags":
            return self._side(f"value {sql_op} ?", [text])
        if self.kind == "note":
            raise QueryError("--where: compare note with ~ (contains), e.g. note ~ 'baseline'")
        arg = number if self.name in NUMERIC_COLUMNS and number is not None else text
        return Cond(f"{{col}} {sql_op} ?", (arg,), column=f"runs.{COLUMNS[self.name]}")


def compile_where(text: str) -> Where:
    """The expression tree of a --where expression (empty: every run)."""
    if not text.strip():
        return Where(None)
    return Where(_Parser(text).parse())


@dataclass(frozen=True)
class Sort:
    kind: str  # params metrics column
    name: str
    descending: bool


def parse_sort(text: str) -> Sort:
    """'metrics.acc' ascending, '-metrics.acc' descending; runs without the key sort last."""
    desc = text.startswith("-")
    key = text.lstrip("-+")
    head, dot, rest = key.partition(".")
    if head in ("params", "metrics") and dot and rest:
        return Sort(head, rest, desc)
    if key in COLUMNS:
        return Sort("column", key, desc)
    raise QueryError(f"--sort {text!r}: sort by params.NAME, metrics.NAME or one of "
                     f"{', '.join(COLUMNS)} (prefix '-' for descending)")
