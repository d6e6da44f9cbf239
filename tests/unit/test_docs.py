"""The docs and the habits they describe stay true: RELIABILITY.md names only tests that
exist, `make lint` mirrors the pre-commit hooks, the fast tier admits no process, the README
is a quick start linking every page of docs/, and every `repro` command line and synopsis in
them parses with the real CLI (sqlite-utils' tests/test_docs.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_reliability_md_names_exists():
    text = (ROOT / "RELIABILITY.md").read_text()
    refs = re.findall(r"`([\w/.]*)::(\w+)`", text)
    assert len(refs) > 20
    current: Path | None = None
    missing = []
    for file, name in refs:
        if file:
            hits = [ROOT / file] if "/" in file else list((ROOT / "tests").rglob(file))
            assert len(hits) == 1 and hits[0].is_file(), f"RELIABILITY.md names {file}"
            current = hits[0]
        assert current is not None, f"::{name} with no file before it"
        if not re.search(rf"^def {name}\(", current.read_text(), re.M):
            missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert missing == []


def _lint_recipe() -> list[str]:
    """The commands of the Makefile's `lint` target, $(VENV) spelled as .venv."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = lines.index("lint: install") + 1
    recipe = []
    for line in lines[start:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(VENV)", ".venv"))
    return recipe


def test_make_lint_runs_the_pre_commit_hooks_in_their_order():
    from pre_commit.clientlib import load_config

    config = load_config(str(ROOT / ".pre-commit-config.yaml"))  # validates it, as pre-commit does
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [h["id"] for h in hooks] == ["ruff", "mypy"]
    # the venv's tools, run once on the whole tree ("system" reads back as "unsupported"
    # from pre-commit 4.4 on: the same language, renamed)
    assert all(h["language"] in ("system", "unsupported") for h in hooks)
    assert all(h["pass_filenames"] is False for h in hooks)
    assert [h["entry"] for h in hooks] == _lint_recipe()


@pytest.mark.process
def test_the_fast_tier_fails_a_test_that_starts_a_process_unmarked(tmp_path):
    (tmp_path / "test_tier.py").write_text(
        "import subprocess, pytest\n"
        "def test_unmarked():\n    subprocess.run(['true'])\n"
        "@pytest.mark.process\ndef test_marked():\n    subprocess.run(['true'])\n"
        "def test_quiet():\n    assert 1\n")
    env = {**os.environ, "REPRO_FAST_TIER": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_tier.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout
    assert "test_unmarked starts a process (['true']) in the fast tier: mark it " \
           "@pytest.mark.process" in done.stdout
    assert "1 failed, 2 passed" in done.stdout


# -- the pages: README (a quick start) and docs/, every repro command in them checked -------

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _cli():
    import typer.main

    from orchestrator.cli import app

    return typer.main.get_command(app)


def _resolve(argv: list[str]):
    """The click command ``argv`` names (``repro --store URL runs`` -> runs) and the rest."""
    group = _cli()
    cmd, rest = group, list(argv)
    while rest and rest[0].startswith("--") and cmd is group:  # the root's own options
        rest = rest[2:] if rest[0] in ("--store",) else rest[1:]
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd, rest


def _command_lines() -> list[tuple[str, str]]:
    """Every `repro ...` line in a code block of the pages (sh, console and CI yaml), less
    comments, prompts and what comes after a pipe."""
    import shlex

    found = []
    for page in PAGES:
        for block in re.finditer(r"```\w*\n(.*?)```", page.read_text(), re.S):
            for line in block.group(1).splitlines():
                code = re.sub(r"^\s*(\$ |- run: )", "", line).split(" #", 1)[0].strip()
                if code.startswith("repro "):
                    found.append((f"{page.name}: {code}", shlex.split(code.split(" | ")[0])))
    return found


COMMAND_LINES = _command_lines()


@pytest.mark.parametrize("line,argv", COMMAND_LINES, ids=[c for c, _ in COMMAND_LINES])
def test_every_command_line_in_the_docs_parses_with_the_real_cli(line, argv):
    """Each command a page shows is one the CLI takes: its command, options and arguments
    parse (click's own parser, nothing runs)."""
    cmd, rest = _resolve(argv[1:])
    assert not hasattr(cmd, "commands"), f"{line}: names no command"
    cmd.make_context(" ".join(argv[:2]), rest)


def _synopses() -> list[tuple[str, list[str]]]:
    """The reference's synopses (`repro CMD [--opt X]...`) and the options each names."""
    text = (ROOT / "docs" / "reference.md").read_text()
    section = text[text.index("## Commands"):text.index("### Exit codes")]
    out = []
    for m in re.finditer(r"`(repro [^`]+)`", section):
        synopsis = " ".join(m.group(1).split())
        unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", synopsis)  # '-m MODULE' is a value
        out.append((synopsis, re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", unquoted)))
    return out


SYNOPSES = _synopses()


def test_the_reference_has_a_synopsis_of_every_command():
    from tests.cli.test_cli import COMMANDS

    named = {" ".join(_resolve(s.split()[1:])[0].name.split()) for s, _ in SYNOPSES}
    missing = [c for c in COMMANDS if c.split()[-1] not in named]
    assert missing == []


@pytest.mark.parametrize("synopsis,options", SYNOPSES, ids=[s[:60] for s, _ in SYNOPSES])
def test_every_option_a_synopsis_names_is_the_commands(synopsis, options):
    cmd, _ = _resolve([w for w in synopsis.split()[1:] if not w.startswith(("[", "-"))])
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    assert [o for o in options if o not in known] == [], synopsis


def test_the_readme_is_a_quick_start_that_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    for page in PAGES:  # and every link between the pages lands on a file
        for target in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links {target}"
