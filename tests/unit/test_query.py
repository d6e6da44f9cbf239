"""The --where language against both real record stores: SQLite and PostgreSQL."""

import pytest

from orchestrator.record import RunStatus
from orchestrator.store import open_store
from orchestrator.store.query import QueryError, parse_sort, parse_where
from tests.unit.test_store import record, rid


@pytest.fixture
def store(tmp_path, backend):
    s = open_store(tmp_path / "h")
    rows = [("a", 0.1, 32, "mlp", True, 0.91, RunStatus.SUCCEEDED, "2026-11-01T10:00:00.000Z"),
            ("b", 0.01, 64, "cnn", False, 0.95, RunStatus.SUCCEEDED, "2026-11-02T10:00:00.000Z"),
            ("c", 0.5, 32, "mlp", False, 0.42, RunStatus.FAILED, "2026-11-03T10:00:00.000Z"),
            ("d", 0.05, 16, "cnn", True, None, RunStatus.SUCCEEDED, "2026-11-04T10:00:00.000Z")]
    for label, lr, hidden, arch, aug, acc, status, created in rows:
        r = record(label, name="digits" if arch == "mlp" else "vision")
        r.params = {"lr": lr, "hidden": hidden, "arch": arch, "aug": aug}
        r.metrics = {"acc": acc, "loss": 1 - acc} if acc is not None else {}
        r.status, r.created_at, r.duration_s = status, created, len(label) * 1.5
        s.runs.insert(r)
    s.runs.set_tags(rid("a"), {"team": "vision", "stage": "baseline"})
    s.runs.set_tags(rid("b"), {"team": "nlp"})
    s.runs.add_note(rid("c"), "diverged after epoch 3; LR too high")
    return s


def ids(store, where, sort=None, limit=None):
    found = store.runs.query_ids(parse_where(where), parse_sort(sort) if sort else None,
                                 limit)
    return [i.rstrip("0") for i in found]  # back to the test's labels


@pytest.mark.parametrize("where, expected", [
    ("params.lr < 0.1", {"b", "d"}),
    ("params.lr < 0.1 and metrics.acc >= 0.9", {"b"}),
    ("params.lr <= 0.1 or status = failed", {"a", "b", "c", "d"}),
    ("params.arch = mlp", {"a", "c"}),
    ("params.arch = 'mlp' and not status = failed", {"a"}),
    ("params.arch in (cnn, 'gru')", {"b", "d"}),
    ("params.hidden = 32", {"a", "c"}),
    ("params.aug = true", {"a", "d"}),
    ("metrics.acc is null", {"d"}),
    ("metrics.acc is not null and metrics.loss < 0.07", {"b"}),
    ("tags.team = vision", {"a"}),
    ("tags.team is not null", {"a", "b"}),
    ("tags.team != vision", {"b"}),
    ("note ~ 'too high'", {"c"}),
    ("name ~ dig", {"a", "c"}),
    ("name = vision", {"b", "d"}),
    ("created_at >= 2026-11-03", {"c", "d"}),
    ("created_at < 2026-11-02 or (status = failed and params.lr > 0.4)", {"a", "c"}),
    ("duration_s > 1", {"a", "b", "c", "d"}),
    ("", {"a", "b", "c", "d"}),
])
def test_where(store, where, expected):
    assert set(ids(store, where)) == expected
    assert store.runs.query_count(parse_where(where)) == len(expected)


def test_sort_and_limit(store):
    assert ids(store, "", "-metrics.acc") == ["b", "a", "c", "d"]  # missing values last
    assert ids(store, "", "metrics.acc") == ["c", "a", "b", "d"]
    assert ids(store, "", "params.lr", limit=2) == ["b", "d"]
    assert ids(store, "", "-created_at") == ["d", "c", "b", "a"]
    assert ids(store, "status = succeeded", "-params.hidden") == ["b", "a", "d"]


@pytest.mark.parametrize("where, needle", [
    ("params.lr <", "expected a value, got the end at column 12"),
    ("params.lr < 0.1 and", "expected a field"),
    ("params.lr <<< 0.1", "expected a value, got '<' at column 12 (near '<< 0.1')"),
    ("color = red", "unknown field 'color'"),
    ("params.lr 0.1", "expected an operator"),
    ("(params.lr < 0.1", "expected ')', got the end"),
    ("metrics.acc > high", "metrics.acc is numeric"),
    ("params.lr < 0.1 $", "unexpected '$' at column 17"),
])
def test_bad_expressions_point_at_the_token(where, needle):
    with pytest.raises(QueryError) as e:
        parse_where(where)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_sort():
    with pytest.raises(QueryError, match="--sort 'colour'"):
        parse_sort("colour")


def test_projection_follows_record_updates(store):
    r = store.runs.get(rid("d"))
    r.metrics = {"acc": 0.99}
    store.runs.save(r)
    assert ids(store, "metrics.acc > 0.98") == ["d"]


def test_tags_can_be_removed(store):
    store.runs.set_tags(rid("a"), {}, remove=["team"])
    assert store.runs.tags(rid("a")) == {"stage": "baseline"}


WHERES = ["", "params.lr < 0.1", "params.arch = mlp and metrics.acc >= 0.4",
          "status = succeeded or tags.team = nlp", "metrics.acc is null",
          "not params.aug = true", "params.arch in (cnn, mlp) and duration_s > 0"]
SORTS = ["-metrics.acc", "metrics.acc", "params.lr", "-params.arch", "-created_at",
         "duration_s"]


@pytest.mark.parametrize("where", WHERES)
@pytest.mark.parametrize("sort", SORTS)
def test_both_query_plans_agree(store, monkeypatch, where, sort):
    """Driving from a selective condition and walking the sort index give the same runs in
    the same order (small stores always take the first plan; force the second)."""
    driven = ids(store, where, sort, limit=3)
    monkeypatch.setattr(type(store.runs), "_selective_condition", lambda *a: None)
    walked = ids(store, where, sort, limit=3)
    assert driven == walked
    assert set(ids(store, where, sort)) >= set(walked)


@pytest.mark.parametrize("first, second, expected", [
    ("params.lr <= 0.1 or status = failed", "params.arch = mlp", {"a", "c"}),
    ("", "params.arch = cnn", {"b", "d"}),
    ("params.aug = true", "", {"a", "d"}),
])
def test_where_and_narrows_a_compiled_filter(store, first, second, expected):
    both = parse_where(first).and_(parse_where(second))
    assert {i.rstrip("0") for i in store.runs.query_ids(both)} == expected
    assert store.runs.query_count(both) == len(expected)


def test_the_parser_yields_a_tree_without_sql():
    """The parser knows fields, operators and values; SQL is the store's (sql_query.py),
    so another backend compiles the same tree."""
    from orchestrator.store.query import Bool, Compare, Field, Present, Value, Where

    assert parse_where("params.lr < 0.1 and (name ~ 'mlp' or metrics.acc is null)") == Where(
        Bool("AND", (Compare(Field("params", "lr"), "<", Value("0.1", 0.1)),
                     Bool("OR", (Compare(Field("column", "name"), "~", Value("mlp", None)),
                                 Present(Field("metrics", "acc"), missing=True))))))
    assert parse_where("status == failed").root == Compare(Field("column", "status"), "=",
                                                           Value("failed", None))


def test_names_with_spaces_are_quoted(store):
    r = store.runs.get(rid("a"))
    r.metrics = {**r.metrics, "val loss": 0.25}
    store.runs.save(r)
    assert ids(store, 'metrics."val loss" < 0.3') == ["a"]
    assert ids(store, "metrics.'val loss' is not null", "-metrics.\"val loss\"") == ["a"]
