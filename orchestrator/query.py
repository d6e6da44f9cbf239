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


@dataclass(frozen=True)
class Tok:
    kind: str  # op paren str num word kw end
    text: str
    pos: int


class QueryError(UsageError):
    pass


def tokenize(text: str) -> list[Tok]:
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
    toks.append(Tok("end", "", len(text)))
    return toks


def _error(text: str, pos: int, what: str) -> QueryError:
    near = f" (near {text[pos:pos + 20]!r})" if pos < len(text) else ""
    return QueryError(f"--where {text!r}: {what} at column {pos + 1}{near}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

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
            got = f"{self.tok.text!r}" if self.tok.kind != "end" else "the end"
            raise _error(self.text, self.tok.pos, f"expected {what}, got {got}")
        return t

    def parse(self) -> tuple[str, list[object]]:
        sql, args = self.or_()
        if self.tok.kind != "end":
            raise _error(self.text, self.tok.pos, f"unexpected {self.tok.text!r}")
        return sql, args

    def or_(self) -> tuple[str, list[object]]:
        sql, args = self.and_()
        while self.take("kw", "or"):
            s2, a2 = self.and_()
            sql, args = f"({sql} OR {s2})", args + a2
        return sql, args

    def and_(self) -> tuple[str, list[object]]:
        sql, args = self.not_()
        while self.take("kw", "and"):
            s2, a2 = self.not_()
            sql, args = f"({sql} AND {s2})", args + a2
        return sql, args

    def not_(self) -> tuple[str, list[object]]:
        if self.take("kw", "not"):
            sql, args = self.not_()
            return f"(NOT {sql})", args
        if self.take("paren", "("):
            sql, args = self.or_()
            self.expect("paren", "')'", ")")
            return sql, args
        return self.comparison()

    def value(self) -> Tok:
        t = self.tok
        if t.kind in ("num", "str", "word"):
            self.i += 1
            return t
        got = f"{t.text!r}" if t.kind != "end" else "the end"
        raise _error(self.text, t.pos, f"expected a value, got {got}")

    def comparison(self) -> tuple[str, list[object]]:
        ftok = self.tok
        if ftok.kind != "word":
            got = f"{ftok.text!r}" if ftok.kind != "end" else "the end"
            raise _error(self.text, ftok.pos, f"expected a field (params.X, metrics.X, "
                         f"tags.X, status, name, created_at, ...), got {got}")
        self.i += 1
        field = Field.parse(ftok, self.text)
        if self.take("kw", "is"):
            negate = bool(self.take("kw", "not"))
            self.expect("kw", "'null'", "null")
            sql, args = field.present()
            return (sql, args) if negate else (f"(NOT {sql})", args)
        if self.take("kw", "in"):
            self.expect("paren", "'(' after in", "(")
            values = [self.value()]
            while self.take("paren", ","):
                values.append(self.value())
            self.expect("paren", "')'", ")")
            parts = [field.compare("=", v) for v in values]
            return "(" + " OR ".join(p for p, _ in parts) + ")", [a for _, x in parts for a in x]
        op = self.tok
        if op.kind != "op":
            got = f"{op.text!r}" if op.kind != "end" else "the end"
            raise _error(self.text, op.pos, f"expected an operator (= != < <= > >= ~ in is) "
                         f"after {ftok.text}, got {got}")
        self.i += 1
        return field.compare(op.text, self.value())


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

    def present(self) -> tuple[str, list[object]]:
        if self.kind == "params":
            return "runs.id IN (SELECT run_id FROM run_params WHERE name = ?)", [self.name]
        if self.kind == "metrics":
            return ("runs.id IN (SELECT run_id FROM run_metrics WHERE name = ? AND value IS "
                    "NOT NULL)", [self.name])
        if self.kind == "tags":
            return "runs.id IN (SELECT run_id FROM run_tags WHERE key = ?)", [self.name]
        if self.kind == "note":
            return "runs.id IN (SELECT run_id FROM run_notes)", []
        return f"runs.{COLUMNS[self.name]} IS NOT NULL", []

    def compare(self, op: str, v: Tok) -> tuple[str, list[object]]:
        number = _number(v)
        text = v.text[1:-1] if v.kind == "str" else v.text
        if op == "~":
            like = f"%{text}%"
            if self.kind == "column":
                return f"runs.{COLUMNS[self.name]} LIKE ?", [like]
            table, col, key = {
                "params": ("run_params", "value_text", "name"),
                "tags": ("run_tags", "value", "key"),
                "note": ("run_notes", "text", None),
                "metrics": ("run_metrics", "CAST(value AS TEXT)", "name"),
            }[self.kind]
            where = f"{key} = ? AND " if key else ""
            args: list[object] = [self.name] if key else []
            return f"runs.id IN (SELECT run_id FROM {table} WHERE {where}{col} LIKE ?)", [
                *args, like]
        sql_op = OPS[op]
        if self.kind == "params":
            col, arg = ("value_num", number) if number is not None else ("value_text", text)
            return (f"runs.id IN (SELECT run_id FROM run_params WHERE name = ? AND {col} "
                    f"{sql_op} ?)", [self.name, arg])
        if self.kind == "metrics":
            if number is None:
                raise QueryError(f"--where: metrics.{self.name} is numeric; compare it with a "
                                 f"number, not {v.text!r}")
            return (f"runs.id IN (SELECT run_id FROM run_metrics WHERE name = ? AND value "
                    f"{sql_op} ?)", [self.name, number])
        if self.kind == "tags":
            return (f"runs.id IN (SELECT run_id FROM run_tags WHERE key = ? AND value {sql_op} "
                    "?)", [self.name, text])
        if self.kind == "note":
            raise QueryError("--where: compare note with ~ (contains), e.g. note ~ 'baseline'")
        arg = number if self.name in NUMERIC_COLUMNS and number is not None else text
        return f"runs.{COLUMNS[self.name]} {sql_op} ?", [arg]


def _number(v: Tok) -> float | None:
    if v.kind != "num":
        return None
    return float(v.text)


def compile_where(text: str) -> tuple[str, list[object]]:
    """SQL boolean expression (over ``runs``) and its arguments for a --where expression."""
    if not text.strip():
        return "1", []
    return _Parser(text).parse()


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
