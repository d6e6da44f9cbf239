"""The CLI layer alone (DVC's tests/unit/command style): each command parses its options and
hands exactly that to one core function; --json failures are one JSON document on stdout.
The core functions are replaced, so nothing here needs Docker."""

from __future__ import annotations

import json
import textwrap

import pytest
from typer.testing import CliRunner

from orchestrator import cli
from orchestrator.replay import Grants
from tests.helpers import make_repo, repro
from tests.unit.test_resolve import SPEC

runner = CliRunner()


class Called(Exception):
    """Raised by a stand-in core function, carrying what it was given."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__("called")
        self.args_, self.kwargs = args, kwargs


def stand_in(*args: object, **kwargs: object) -> None:
    raise Called(*args, **kwargs)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    return make_repo(tmp_path / "repo", {"spec.yaml": SPEC, "job/train.py": "print(1)\n",
                                         "data.bin": "0123456789"})


def invoke(*args: str) -> Called:
    result = runner.invoke(cli.app, list(args))
    assert isinstance(result.exception, Called), result.output
    return result.exception


@pytest.mark.process
def test_launch_forwards_its_options(repo, monkeypatch):
    monkeypatch.setattr("orchestrator.runner.launch", stand_in)
    call = invoke("launch", str(repo / "spec.yaml"), "--param", "lr=0.5", "--allow-dirty",
                  "--strict", "-q")
    loaded, _store, _engine = call.args_
    assert loaded.spec.params == {"lr": 0.5}
    assert call.kwargs["allow_dirty"] is True and call.kwargs["strict"] is True


@pytest.mark.process
def test_replay_turns_its_flags_into_grants(repo, monkeypatch, tmp_path):
    from orchestrator.store import open_store
    from tests.unit.test_store import record

    store = open_store()
    store.runs.insert(record("0123456789abcdef"))
    store.close()
    monkeypatch.setattr("orchestrator.replay.replay", stand_in)
    call = invoke("replay", "0123456789ab", "--allow-network", "--secret", "HF_TOKEN",
                  "--input", f"data={tmp_path}/x.bin", "--timeout", "30m",
                  "--tolerance", "metrics.acc=1e-6", "--strict-env")
    original, _store, _engine, _hooks, tolerances, strict_env, grants, elsewhere = call.args_
    assert original.id == "0123456789abcdef" and tolerances == {"acc": 1e-6} and strict_env
    assert elsewhere is None  # no --executor: replayed here
    assert grants == Grants(network=True, secrets=("HF_TOKEN",),
                            inputs={"data": tmp_path / "x.bin"}, timeout_s=1800.0)


@pytest.mark.process
def test_export_limits_are_sizes_not_memory(repo, monkeypatch, tmp_path):
    """Appendix A 1: --max-input-size 1m was refused by Docker's memory minimum."""
    from orchestrator.store import open_store
    from tests.unit.test_store import record

    store = open_store()
    store.runs.insert(record("0123456789abcdef"))
    store.close()
    monkeypatch.setattr("orchestrator.bundle.export_bundle", stand_in)
    call = invoke("export", "0123456789abcdef", "--bundle", str(tmp_path / "b"),
                  "--max-input-size", "1m", "--max-output-size", "512k")
    _record, _store, _engine, dest, max_input, _progress, max_output = call.args_
    assert (dest, max_input, max_output) == (tmp_path / "b", 1 << 20, 512 << 10)


@pytest.mark.process
def test_runs_name_narrows_the_parsed_filter(repo, monkeypatch):
    from orchestrator.store.query import Bool, name_is, not_experiment, parse_where

    seen = {}

    def query(self, where, sort, limit):
        seen["where"] = where
        return []

    from orchestrator.store import open_store

    open_store().close()
    monkeypatch.setattr("orchestrator.store.runs.RunStore.query", query)
    result = runner.invoke(cli.app, ["runs", "--name", "it's mlp", "--where",
                                     "params.lr < 0.1", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["where"].root == Bool("AND", (
        Bool("AND", (parse_where("params.lr < 0.1").root, name_is("it's mlp").root)),
        not_experiment().root))  # a diagnosis' replays: left out unless --experiments


@pytest.mark.process
def test_cancel_of_a_sweep_takes_its_id_as_a_value_never_as_query_text(repo, monkeypatch):
    """`--sweep "x' or status = 'running"` once parsed to `sweep = 'x' OR status = 'running'`
    and cancelled every unfinished run of the store."""
    from orchestrator.record import RunStatus
    from orchestrator.store import open_store
    from tests.unit.test_store import record

    store = open_store()
    for run_id, sweep_id in [("0123456789abcdef", "5eed00000001"), ("fedcba9876543210", None)]:
        r = record(run_id)
        store.runs.insert(r.model_copy(update={"status": RunStatus.RUNNING,
                                               "sweep_id": sweep_id}))
    store.close()
    monkeypatch.setattr("orchestrator.scheduler.cancel", stand_in)
    for hostile in ["5eed00000001' or status = 'running", "5eed00000001' or '1' = '1"]:
        result = runner.invoke(cli.app, ["cancel", "--sweep", hostile])
        assert isinstance(result.exception, Called)
        assert result.exception.args_[1] == []  # no run of the store has that sweep id
    called = invoke("cancel", "--sweep", "5eed00000001")
    assert [r.id for r in called.args_[1]] == ["0123456789abcdef"]


@pytest.mark.process
def test_sweep_forwards_the_planned_points(repo, monkeypatch):
    monkeypatch.setattr("orchestrator.sweep.run_sweep", stand_in)
    call = invoke("sweep", str(repo / "spec.yaml"), "--grid", "lr=0.1,0.01", "-j", "2")
    _loaded, points, _home = call.args_
    assert points == [{"lr": 0.1}, {"lr": 0.01}] and call.kwargs["parallel"] == 2


@pytest.mark.parametrize("args, code, kind", [
    (["show", "deadbeef", "--json"], 4, "RunNotFound"),
    (["runs", "--where", "metrics.acc > high", "--json"], 2, "QueryError"),
    (["launch", "nowhere.yaml", "--json"], 2, "SpecError"),
    (["runs", "--limit", "many", "--json"], 2, "UsageError"),
])
@pytest.mark.process
def test_json_failures_are_one_json_document_on_stdout(tmp_path, args, code, kind):
    p = repro(*args, env={"REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == code
    doc = json.loads(p.stdout)
    assert doc["error"]["kind"] == kind and doc["error"]["exit_code"] == code
    assert doc["error"]["message"] and "Traceback" not in p.stderr


def test_every_setting_is_in_the_reference_table():
    import inspect
    import re

    from orchestrator import settings
    from tests.helpers import ROOT

    reference = (ROOT / "docs" / "reference.md").read_text()
    table = reference[reference.index("## Settings"):]
    for name, fn in inspect.getmembers(settings, inspect.isfunction):
        doc = inspect.getdoc(fn) or ""
        m = re.match(r"([A-Z_]+): ", doc)
        if fn.__module__ == settings.__name__ and m:
            assert f"| `{m[1]}` |" in table, f"{m[1]} ({name}) is not in the reference"


@pytest.mark.process
def test_a_jobs_escape_sequences_reach_a_terminal_inert():
    """Issue 21, L5: `repro logs` wrote a job's bytes raw, so its output could clear the
    screen, retitle the terminal or hide lines. On a terminal they are shown as escapes;
    newlines, tabs and UTF-8 split across chunks survive."""
    import io

    from orchestrator.ui_live import inert_writer

    out = io.StringIO()
    write = inert_writer(out)
    for chunk in (b"loss 0.3\n\x1b[2J\x1b]0;pwned\x07", b"caf\xc3", b"\xa9\tok\r\n", b""):
        write(chunk)
    assert out.getvalue() == "loss 0.3\n\\x1b[2J\\x1b]0;pwned\\x07café\tok\\x0d\n"


@pytest.mark.process
def test_a_dry_run_with_no_scheduler_is_refused_before_anything_runs(repo, monkeypatch):
    """--dry-run renders what a scheduler would submit; without --executor it was ignored and
    the run launched for real."""
    from orchestrator.errors import UsageError

    monkeypatch.chdir(repo)
    monkeypatch.setattr("orchestrator.runner.launch", stand_in)
    result = runner.invoke(cli.app, ["launch", "spec.yaml", "--dry-run"])
    assert isinstance(result.exception, UsageError)
    assert str(result.exception).startswith("--dry-run renders what a scheduler would run")


@pytest.mark.process
def test_each_command_line_registers_its_command_and_the_table_names_them_all():
    """`main` imports only the module of the command it runs (cli.MODULES): the table must
    name every command of every module, and a command line must get its command."""
    import subprocess
    import sys

    code = textwrap.dedent("""\
        import json, sys
        from orchestrator import cli
        app = cli.command_app(sys.argv[1:])
        names = [c.name or c.callback.__name__ for c in app.registered_commands]
        names += [g.name for g in app.registered_groups]
        print(json.dumps(names))
        """)

    def registered(*argv: str) -> list[str]:
        p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                           text=True, check=True)
        return json.loads(p.stdout)

    every = registered()
    assert sorted(every) == sorted(n for names in cli.MODULES.values() for n in names)
    for module, names in cli.MODULES.items():
        for name in names:
            got = registered("--store", "x", "--debug", name, "--help")
            assert name in got, (module, name)
            assert set(got) - {"image"} <= set(names) | {"image"}  # its module's alone
    assert sorted(registered("no-such-command")) == sorted(every)
