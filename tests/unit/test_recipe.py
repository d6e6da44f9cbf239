"""What a recipe folder says (recipe.yaml, Dockerfile, lock, context), checked before any
build, and what identifies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine import BuildFailed
from orchestrator.engine.images import _build_failure
from orchestrator.engine.recipe import (
    context_files,
    digest,
    folder_digest,
    instruction_lines,
    load,
    repository,
)
from orchestrator.errors import ExitCode, RecipeError
from orchestrator.recipes import names, shipped

INSTALLER = Path(__file__)  # any file: stands in for the lock installer


def folder(tmp_path: Path, files: dict[str, str], name: str = "train") -> Path:
    root = tmp_path / name
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_shipped_recipes_load_and_chain():
    assert {"debian", "python", "debian-torch", "python-torch"} <= set(names())
    python = load(shipped("python"))
    assert python.base == shipped("debian") and python.dockerfile is not None
    torch = load(shipped("python-torch"))  # the python Dockerfile, found in its context
    assert torch.dockerfile == shipped("python") / "Dockerfile"
    assert torch.build_args == {"VENV_FLAGS": "--system-site-packages"}
    assert load(shipped("debian")).rootfs
    assert repository(shipped("python")) == "repro/python"


@pytest.mark.parametrize("files, message", [
    ({"Dockerfile": "ARG BASE\nFROM ${BASE}\n"},
     "FROM ${{BASE}} needs a base: add {root}/recipe.yaml with `base: python`"),
    ({"recipe.yaml": "base: python\nimage: x\n"},
     "{root}/recipe.yaml: unknown key 'image'; a recipe.yaml has base, lock, context, "
     "build_args"),
    ({"recipe.yaml": "base: pyton\nlock: l.txt\n", "l.txt": ""},
     "{root}/recipe.yaml: base 'pyton' is neither a folder next to it nor a recipe shipped "
     "with repro"),
    ({"recipe.yaml": "base: python\nlock: nope.lock\n"},
     "{root}/recipe.yaml: lock 'nope.lock' is not a file"),
    ({"recipe.yaml": "lock: l.txt\n", "l.txt": ""},
     "{root}/recipe.yaml: lock: installs into a base image; add `base: python`"),
    ({"recipe.yaml": "base: python\n"},
     "{root}/recipe.yaml: a recipe needs a Dockerfile (next to it or in its context) or a "
     "lock: to install"),
    ({"recipe.yaml": "base: python\nbuild_args: {BASE: x}\n", "Dockerfile": "FROM x\n"},
     "build_args cannot set BASE"),
    ({"recipe.yaml": "base: python\ncontext: ../elsewhere\n", "Dockerfile": "FROM x\n"},
     "{root}/recipe.yaml: context '../elsewhere' is not a folder"),
    ({"recipe.yaml": "base: [python\n"}, "{root}/recipe.yaml: cannot read recipe"),
    ({"notes.txt": "x"}, "not an image recipe (needs rootfs.yaml, a Dockerfile or recipe.yaml "
                         "with lock:)"),
])
def test_a_wrong_recipe_is_a_usage_error_naming_its_file(tmp_path, files, message):
    root = folder(tmp_path, files)
    with pytest.raises(RecipeError) as e:
        load(root)
    assert message.format(root=root) in str(e.value)
    assert e.value.exit_code == ExitCode.USAGE and "\n" not in str(e.value)


def test_lock_context_and_build_args(tmp_path):
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    root = folder(tmp_path, {"recipe.yaml": "base: python\nlock: ../requirements.txt\n"
                                            "context: ..\nbuild_args: {N: 3}\n",
                             "Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY requirements.txt /\n"})
    recipe = load(root)
    assert recipe.kind == "lock+dockerfile"
    assert recipe.lock == tmp_path / "requirements.txt" and recipe.context == tmp_path
    assert recipe.build_args == {"N": "3"}
    before = digest(recipe, "sha256:base", INSTALLER)
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    assert digest(recipe, "sha256:base", INSTALLER) != before  # the lock is in the digest


def test_a_plain_recipe_keeps_the_digest_it_always_had(tmp_path):
    root = folder(tmp_path, {"recipe.yaml": "base: python\n", "Dockerfile": "FROM ${BASE}\n"})
    assert digest(load(root), "sha256:b", INSTALLER) == folder_digest(root, extra="sha256:b")


def test_a_context_never_sends_git_or_a_store(tmp_path):
    root = folder(tmp_path, {"Dockerfile": "FROM x\n", ".git/HEAD": "ref", "app.py": "1",
                             ".repro/repro.db": "", "sub/.git/x": ""})
    assert context_files(root) == ["Dockerfile", "app.py", "sub"]
    before = folder_digest(root)
    (root / ".git" / "HEAD").write_text("another commit")
    assert folder_digest(root) == before


def test_build_steps_map_to_dockerfile_lines():
    text = ("# syntax\nARG BASE\n\nFROM ${BASE}\n# comment\nRUN a \\\n  # inside\n  && b\n"
            "RUN c\n")
    assert instruction_lines(text) == [2, 4, 6, 9]


def test_a_failed_step_names_its_line_and_what_it_printed(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE\nFROM ${BASE}\n\nRUN pip install x\n")
    e = BuildFailed("The command '/bin/sh -c pip install x' returned a non-zero code: 1",
                    (3, "RUN pip install x"), ["Collecting x", "SSL: CERTIFICATE_VERIFY_FAILED"])
    message = _build_failure(dockerfile, e)
    assert message.startswith(f"{dockerfile}:4: step `RUN pip install x` failed: ")
    assert "last lines: Collecting x | SSL: CERTIFICATE_VERIFY_FAILED" in message
    assert "install packages through recipe.yaml's lock:" in message
    parse = BuildFailed("dockerfile parse error line 3: unknown instruction: RUNN", None, [])
    assert _build_failure(dockerfile, parse) == (
        f"{dockerfile}:3: dockerfile parse error line 3: unknown instruction: RUNN")


def test_the_recipe_init_writes_is_named_after_its_project(tmp_path):
    (tmp_path / "mono" / ".git").mkdir(parents=True)
    a = folder(tmp_path / "mono", {"recipe.yaml": "base: python\n"}, "vision/repro/image")
    assert repository(a) == "repro/mono/vision"
    (tmp_path / "solo" / ".git").mkdir(parents=True)
    b = folder(tmp_path / "solo", {"recipe.yaml": "base: python\n"}, "repro/image")
    assert repository(b) == "repro/solo"
