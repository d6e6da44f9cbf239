"""The ``--where`` language, parsed into a dialect-free tree (each record store compiles
it: ``sql_query.py`` for SQLite; a PostgreSQL compiler is a second module, not a second
parser).

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

from ..errors import UsageError

COLUMNS = {"status": "status", "name": "name", "id": "id", "created_at": "created_at",
           "started_at": "started_at", "finished_at": "finished_at",
           "duration_s": "duration_s", "exit_code": "exit_code", "sweep": "sweep_id",
           "replay_of": "replay_of", "user": "user_name", "host": "host",
           "diagnosis_of": "diagnosis_of"}
NUMERIC_COLUMNS = {"duration_s", "exit_code"}
TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<op>==|!=|<=|>=|=|<|>|~)
  | (?P<paren>[(),])
  | (?P<qfield>(?:params|metrics|tags)\.(?:'[^']+'|"[^"]+"))
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


# -- the expression tree (no SQL in it) ------------------------------------------------------

class Node:
    def conjuncts(self) -> list[Node]:
        return [self]


@dataclass(frozen=True)
class Field:
    kind: str  # params metrics tags column note
    name: str


@dataclass(frozen=True)
class Value:
    text: str  # a quoted string's contents, or the word or number as written
    number: float | None  # set when it was written as a number


@dataclass(frozen=True)
class Compare(Node):
    field: Field
    op: str  # = != < <= > >= ~
    value: Value


@dataclass(frozen=True)
class Present(Node):
    """``is null`` (missing=True) or ``is not null``."""

    field: Field
    missing: bool


@dataclass(frozen=True)
class Bool(Node):
    op: str  # AND / OR
    parts: tuple[Node, ...]

    def conjuncts(self) -> list[Node]:
        if self.op != "AND":
            return [self]
        return [c for p in self.parts for c in p.conjuncts()]


@dataclass(frozen=True)
class Not(Node):
    part: Node


@dataclass(frozen=True)
class Where:
    """A parsed --where expression (``root`` None: every run)."""

    root: Node | None

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
        if ftok.kind not in ("word", "qfield"):
            raise _error(self.text, ftok.pos, "expected a field (params.X, metrics.X, tags.X, "
                         f"status, name, created_at, ...), got {self._got()}")
        self.i += 1
        field = _field(ftok, self.text)
        if self.take("kw", "is"):
            negate = bool(self.take("kw", "not"))
            self.expect("kw", "'null'", "null")
            return Present(field, missing=not negate)
        if self.take("kw", "in"):
            self.expect("paren", "'(' after in", "(")
            values = [self.value()]
            while self.take("paren", ","):
                values.append(self.value())
            self.expect("paren", "')'", ")")
            parts = tuple(_compare(field, "=", v) for v in values)
            return parts[0] if len(parts) == 1 else Bool("OR", parts)
        op = self.tok
        if op.kind != "op":
            raise _error(self.text, op.pos, "expected an operator (= != < <= > >= ~ in is) "
                         f"after {ftok.text}, got {self._got()}")
        self.i += 1
        return _compare(field, op.text, self.value())


def _field(tok: Tok, text: str) -> Field:
    head, dot, rest = tok.text.partition(".")
    if tok.kind == "qfield":  # metrics."val loss": a name with spaces or symbols
        return Field(head, rest[1:-1])
    if head in ("params", "metrics", "tags") and dot and rest:
        return Field(head, rest)
    if tok.text in COLUMNS:
        return Field("column", tok.text)
    if tok.text == "note":
        return Field("note", "")
    raise _error(text, tok.pos, f"unknown field {tok.text!r} (use params.NAME, "
                 f"metrics.NAME, tags.KEY, note, {', '.join(COLUMNS)})")


def _compare(field: Field, op: str, v: Tok) -> Compare:
    """A comparison, checked for what the fields allow (whatever the store)."""
    number = float(v.text) if v.kind == "num" else None
    text = v.text[1:-1] if v.kind == "str" else v.text
    if op != "~" and field.kind == "metrics" and number is None:
        raise QueryError(f"--where: metrics.{field.name} is numeric; compare it with a number, "
                         f"not {v.text!r}")
    if op != "~" and field.kind == "note":
        raise QueryError("--where: compare note with ~ (contains), e.g. note ~ 'baseline'")
    return Compare(field, "=" if op == "==" else op, Value(text, number))


def name_is(name: str) -> Where:
    """Runs of one spec name (`repro runs --name`), as a tree: no query text is pasted."""
    return Where(Compare(Field("column", "name"), "=", Value(name, None)))


def sweep_is(sweep_id: str) -> Where:
    """Runs of one sweep (`repro cancel --sweep`), as a tree: no query text is pasted."""
    return Where(Compare(Field("column", "sweep"), "=", Value(sweep_id, None)))


def not_experiment() -> Where:
    """Runs other than a diagnosis' experiment replays (run lists leave those out)."""
    return Where(Present(Field("column", "diagnosis_of"), missing=True))


def experiments_of(run_id: str) -> Where:
    """A diagnosis' experiment replays of ``run_id``."""
    return Where(Compare(Field("column", "diagnosis_of"), "=", Value(run_id, None)))


def parse_where(text: str) -> Where:
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
    if len(rest) > 1 and rest[0] == rest[-1] and rest[0] in "'\"":
        rest = rest[1:-1]
    if head in ("params", "metrics") and dot and rest:
        return Sort(head, rest, desc)
    if key in COLUMNS:
        return Sort("column", key, desc)
    raise QueryError(f"--sort {text!r}: sort by params.NAME, metrics.NAME or one of "
                     f"{', '.join(COLUMNS)} (prefix '-' for descending)")
