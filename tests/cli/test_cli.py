"""The CLI contract: help everywhere, documented in docs/reference.md, one-line errors, exit
codes."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT, repro


def _commands() -> list[str]:
    """Every command the typer app has (sub-commands as 'image build'), so a new command
    cannot miss its help text or its reference entry (sqlite-utils' test_docs.py)."""
    import typer.main

    from orchestrator.cli import app

    names = []
    for name, cmd in typer.main.get_command(app).commands.items():
        subs = getattr(cmd, "commands", None)
        names += [f"{name} {sub}" for sub in subs] if subs else [name]
    return sorted(names)


COMMANDS = _commands()


@pytest.mark.process
def test_top_level_help_lists_every_command():
    p = repro("--help")
    assert p.returncode == 0
    rows = {line.split()[0] for line in p.stdout.splitlines() if line.startswith("  ")
            and line.split()}
    hidden = {"node-run", "fetch"}  # what Slurm and Kubernetes jobs run; never typed
    assert {cmd.split()[0] for cmd in COMMANDS} - hidden <= rows  # each as its own row
    assert not hidden & rows


@pytest.mark.process
@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_and_is_in_the_reference(cmd):
    p = repro(*cmd.split(), "--help")
    assert p.returncode == 0 and "Usage:" in p.stdout
    doc = re.search(r"Usage: .*?\n\n(.+?)\n", p.stdout, re.S)
    assert doc and doc.group(1).strip(), f"`repro {cmd}` has no help text"
    assert f"repro {cmd}" in (ROOT / "docs" / "reference.md").read_text()


@pytest.mark.process
def test_version():
    p = repro("--version")
    assert p.returncode == 0 and p.stdout.startswith("repro ")


@pytest.mark.process
def test_unknown_run_is_exit_4_one_line(tmp_path):
    p = repro("show", "deadbeef", env={"REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == 4
    assert p.stderr.strip().splitlines() == [
        f"error: no run 'deadbeef' in {tmp_path / 'h'}: there is no store there yet; cd to the"
        " folder you launched from or set REPRO_HOME"]
    assert not (tmp_path / "h").exists()  # reading never creates a store
    p = repro("runs", env={"REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == 0 and "none yet" in p.stdout


@pytest.mark.process
def test_missing_spec_file_is_exit_2(tmp_path):
    p = repro("launch", str(tmp_path / "nope.yaml"), env={"REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == 2 and "nope.yaml: no such spec file" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.process
def test_bad_param_override_is_exit_2(tmp_path):
    p = repro("launch", str(ROOT / "specs" / "digits-mlp.yaml"), "--param", "lr=fast",
              env={"REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == 2
    assert "--param lr=fast: params.lr is a float" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.process
def test_unreachable_docker_names_the_socket(project, tmp_path):
    p = repro("launch", "specs/hello.yaml", cwd=project,
              env={"DOCKER_HOST": "unix:///nonexistent/docker.sock",
                   "REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == 5, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "unix:///nonexistent/docker.sock" in lines[0]
    assert "scripts/ensure-docker" in lines[0]


@pytest.mark.process
def test_debug_shows_the_traceback(tmp_path):
    p = repro("--debug", "show", "deadbeef", env={"REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == 4 and "Traceback" in p.stderr


@pytest.mark.process
def test_import_then_rm_through_the_cli(tmp_path, monkeypatch):
    """`repro import` of a bundle, then `repro rm`: one line each, and the store is clean."""
    import json

    from tests.helpers import make_repo
    from tests.unit.test_resolve import SPEC
    from tests.unit.test_trust_boundary import make_bundle

    monkeypatch.setenv("REPRO_ARCHIVE_IMAGES", "0")
    repo = make_repo(tmp_path / "repo", {"spec.yaml": SPEC, "job/train.py": "print(1)\n",
                                         "data.bin": "0123456789"})
    folder, record = make_bundle(repo, tmp_path)
    env = {"REPRO_HOME": str(tmp_path / "other-home")}
    p = repro("import", str(folder), cwd=tmp_path, env=env)
    assert p.returncode == 0 and p.stdout.startswith(f"imported run {record.id} (r, succeeded)")
    p = repro("import", str(folder / "manifest.json"), "--json", cwd=tmp_path, env=env)
    assert json.loads(p.stdout)["origin"]["absent"] == []
    p = repro("rm", record.id[:6], "--json", cwd=tmp_path, env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == {"removed": [record.id]}
    assert json.loads(repro("runs", "--json", cwd=tmp_path, env=env).stdout) == []
    p = repro("rm", record.id, cwd=tmp_path, env=env)
    assert p.returncode == 4 and len(p.stderr.strip().splitlines()) == 1
    p = repro("import", str(tmp_path / "nowhere"), cwd=tmp_path, env=env)
    assert p.returncode == 2 and "no such bundle" in p.stderr


@pytest.mark.process
def test_verify_of_a_path_that_does_not_exist_says_no_such_bundle(tmp_path):
    p = repro("verify", str(tmp_path / "results" / "bundle"), env={"REPRO_HOME": str(tmp_path)})
    assert p.returncode == 2 and "no such bundle folder or manifest" in p.stderr


@pytest.mark.process
def test_verify_help_lists_its_exit_codes():
    p = repro("verify", "--help")
    assert all(f"{code} " in p.stdout for code in (0, 8, 9, 11, 12, 13))


@pytest.mark.process
def test_a_damaged_row_is_skipped_with_a_warning_and_removed_by_its_exact_id(tmp_path):
    """Issue 21, M2: one damaged row broke `repro runs` (and the dashboard) for everyone."""
    import json

    from orchestrator.store import open_store
    from tests.unit.test_store import record

    home = tmp_path / "home"
    store = open_store(home)
    good = record("e1")
    store.runs.insert(good)
    bad = "\x1b[2Jbad\nrow"  # a damaged row's id may hold anything: shown inert
    store.runs.db.execute("INSERT INTO runs (id, name, status, spec_digest, created_at, "
                          "record) VALUES (?, 'x', 'succeeded', 'x', '2099', '{}')", (bad,))
    store.close()
    env = {"REPRO_HOME": str(home)}
    p = repro("runs", "--json", env=env)
    assert p.returncode == 0 and [r["id"] for r in json.loads(p.stdout)] == [good.id]
    warning = [ln for ln in p.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warning) == 1 and "its stored record is damaged" in warning[0]
    assert "its author or the store's admin can remove it" in warning[0]
    assert "\x1b" not in p.stderr
    p = repro("rm", bad, "--json", env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == {"removed": [bad]}
    p = repro("runs", "--json", env=env)
    assert "warning" not in p.stderr and len(json.loads(p.stdout)) == 1


@pytest.mark.process
def test_a_run_id_too_long_to_be_a_file_name_is_an_unknown_run(tmp_path):
    """Found by the team-row fuzzer: `verify` asked the filesystem whether a 600-byte id was
    a bundle, and the OS's ENAMETOOLONG became an internal error."""
    p = repro("verify", "é" * 300, cwd=tmp_path, env={"REPRO_HOME": str(tmp_path / "h")})
    assert p.returncode == 4 and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.process
def test_doctor_says_where_launches_go_and_refuses_an_unknown_executor(tmp_path):
    import json

    env = {"REPRO_HOME": str(tmp_path / "h"), "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    p = repro("doctor", "--json", cwd=tmp_path, env={**env, "REPRO_EXECUTOR": "slurm"})
    row = {c["name"]: c for c in json.loads(p.stdout)["checks"]}["executor"]
    assert row["ok"] and row["detail"].startswith("launches go to slurm")
    p = repro("doctor", "--json", cwd=tmp_path, env={**env, "REPRO_EXECUTOR": "lsf"})
    row = {c["name"]: c for c in json.loads(p.stdout)["checks"]}["executor"]
    assert not row["ok"] and "'lsf'" in row["detail"] and "slurm" in row["fix"]
    assert p.returncode == 5
