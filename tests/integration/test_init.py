"""A user's project, unchanged, for real: `repro init && repro launch && repro verify` on a
fresh clone with only requirements.txt and an unseeded script (real PyPI through this
machine's CA bundle, the real engine); recipe mistakes as usage errors; the CA bundle and
proxy settings used by a lock step and left nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import git, make_repo, repro
from tests.integration.test_replay import run_json

UNSEEDED = textwrap.dedent('''\
    """Trains nothing real: draws from unseeded generators and prints a loss, writes nothing."""
    import argparse
    import random

    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    rng = np.random.default_rng()  # no seed: a new stream every run, unless repro seeds it
    loss = 1.0
    for step in range(args.steps):
        loss *= 1 - args.lr * rng.random() * random.random()
        print(f"step {step} loss={loss:.12f}")
    ''')


@pytest.fixture
def clone(tmp_path: Path, home: Path, images) -> Path:
    """A fresh clone of a user's project: requirements.txt and an unseeded train.py."""
    return make_repo(tmp_path / "vision", {"requirements.txt": "numpy==2.1.3\n",
                                           "train.py": UNSEEDED,
                                           ".gitignore": "__pycache__/\n"})


def test_init_launch_verify_on_a_fresh_clone_with_no_code_edits(clone):
    p, done = run_json("init", cwd=clone, timeout=900)
    assert p.returncode == 0, p.stderr
    assert done["script"] == "train.py" and done["params"] == {"lr": 0.5, "steps": 4}
    assert done["metrics"] == ["loss"] and done["next"] == "repro launch"
    assert sorted(done["written"]) == ["repro.yaml", "repro/image/recipe.yaml",
                                       "repro/requirements.lock"]
    lock = (clone / "repro" / "requirements.lock").read_text()
    assert "numpy==2.1.3 \\\n    --hash=sha256:" in lock
    assert git(clone, "status", "--porcelain", "--untracked-files=no") == ""  # no edits

    p, run = run_json("launch", cwd=clone, timeout=900)  # repro.yaml by default
    assert p.returncode == 0, p.stderr
    trace = [line for line in p.stderr.splitlines()
             if line.split(" ", 1)[0] in ("image", "code", "lock", "seed", "threads", "gpus")]
    assert [line.split(" ", 1)[0] for line in trace] == [
        "image", "code", "lock", "seed", "threads", "gpus"]  # what it pins, as it pins it
    assert trace[0].split()[-1] in ("built", "reused") and "clean" in trace[1]
    assert trace[3].startswith("seed     0  seeds random at start, numpy and torch")
    assert run["status"] == "succeeded" and run["spec_path"].endswith("repro.yaml")
    assert run["resolved"]["command"][-2:] == ["--lr=0.5", "--steps=4"]
    assert run["resolved"]["code"]["dirty"] is False  # init's files are recorded by content
    assert {"numpy", "random"} <= set(run["environment"]["container"]["seeded"])
    assert run["resolved"]["image"]["ref"].startswith("repro/vision:")
    assert [step for step, _ in run["series"]["loss"]] == [0, 1, 2, 3]  # scraped prints
    p = repro("verify", run["id"], cwd=clone, timeout=900)
    assert p.returncode == 0, p.stderr + p.stdout
    assert "IDENTICAL" in p.stdout + p.stderr

    # the seeding is what made it identical: without it the loss differs and verify says so
    spec = clone / "repro.yaml"
    spec.write_text(spec.read_text() + "determinism: off\n")
    p, loose = run_json("launch", "-q", cwd=clone, timeout=900)
    assert p.returncode == 0, p.stderr
    assert loose["environment"]["container"].get("seeded") in (None, [])
    p = repro("verify", loose["id"], cwd=clone, timeout=900)
    assert p.returncode == 8, p.stdout + p.stderr
    assert "loss" in p.stdout + p.stderr

    p, again = run_json("init", cwd=clone)  # the edited spec is kept
    assert p.returncode == 0 and again["kept"] == ["repro.yaml"], p.stderr
    assert "determinism: off" in spec.read_text()


def test_the_lock_step_uses_the_ca_bundle_and_leaves_nothing_of_it(clone, engine, tmp_path):
    marker = "proxy-marker-4b1f.invalid"
    p, _ = run_json("init", cwd=clone, env={"no_proxy": marker}, timeout=900)
    assert p.returncode == 0, p.stderr
    p, built = run_json("image", "build", "repro/image", cwd=clone, env={"no_proxy": marker},
                        timeout=900)
    assert p.returncode == 0, p.stderr
    inspect = json.loads(subprocess.run(["docker", "image", "inspect", built["id"]],
                                        capture_output=True, text=True, check=True).stdout)
    history = subprocess.run(["docker", "history", "--no-trunc", built["id"]],
                             capture_output=True, text=True, check=True).stdout
    for text in (json.dumps(inspect), history):
        assert marker not in text and "ca.crt" not in text and "PIP_CERT" not in text
    listing = subprocess.run(["docker", "run", "--rm", built["id"], "sh", "-c",
                              "ls -A /mnt; python -c 'import numpy; print(numpy.__version__)'"],
                             capture_output=True, text=True, check=True).stdout
    assert listing.split() == ["2.1.3"]  # /mnt empty: no mount point left behind
    # a bundle that does not hold this machine's proxy CA: pip cannot verify PyPI
    other = tmp_path / "other-ca.pem"
    other.write_text(Path("/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt").read_text())
    (clone / "repro" / "requirements.lock").write_text(
        (clone / "repro" / "requirements.lock").read_text() + "\n")  # a new recipe digest
    p = repro("image", "build", "repro/image", cwd=clone, env={"REPRO_CA_BUNDLE": str(other)},
              timeout=900)
    assert p.returncode == 2, p.stderr
    assert "HTTPS certificates could not be verified: set REPRO_CA_BUNDLE" in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(
        f"error: {clone / 'repro' / 'requirements.lock'}: pip could not install it")


def test_recipe_mistakes_are_usage_errors_at_their_line(tmp_path, home, images):
    project = make_repo(tmp_path / "p", {
        "images/fails/recipe.yaml": "base: python\n",
        "images/fails/Dockerfile": "ARG BASE\nFROM ${BASE}\n# a comment\n\n"
                                   "RUN echo preparing && \\\n    ls /no/such/dir\n",
        "images/nobase/Dockerfile": "ARG BASE\nFROM ${BASE}\n",
        "images/typo/recipe.yaml": "base: python\n",
        "images/typo/Dockerfile": "ARG BASE\nFROM ${BASE}\nRUNN true\n",
    })
    p = repro("image", "build", "images/fails", cwd=project, timeout=900)
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {project}/images/fails/Dockerfile:5: step `RUN echo "
                           "preparing &&")
    assert "returned a non-zero code: 2" in last
    # the step's stdout and stderr arrive through one build stream, in either order
    tail = last.split("(last lines: ", 1)[1]
    assert sorted(tail.rstrip(")").split(" | ")) == [
        "ls: cannot access '/no/such/dir': No such file or directory", "preparing"]
    p = repro("image", "build", "images/nobase", cwd=project)
    assert p.returncode == 2 and "FROM ${BASE} needs a base: add" in p.stderr
    p = repro("image", "build", "images/typo", cwd=project, timeout=900)
    assert p.returncode == 2, p.stderr
    assert "images/typo/Dockerfile:3: dockerfile parse error line 3: unknown instruction" \
        in p.stderr


def test_a_context_above_the_recipe_and_build_args(tmp_path, home, images, engine):
    """The repository-root requirements file in a Dockerfile's COPY (context: ..); what the
    context's .dockerignore leaves out changes nothing."""
    project = make_repo(tmp_path / "p", {
        "requirements.txt": "six==1.16.0\n",
        ".dockerignore": "data\n",
        "data/big.bin": "1",
        "image/recipe.yaml": "base: python\ncontext: ..\nbuild_args: {FLAVOUR: plain}\n",
        "image/Dockerfile": "ARG BASE\nFROM ${BASE}\nARG FLAVOUR\n"
                            "COPY requirements.txt /opt/requirements.txt\n"
                            "RUN echo $FLAVOUR > /opt/flavour\n",
    })
    p, built = run_json("image", "build", "image", cwd=project, timeout=900)
    assert p.returncode == 0, p.stderr
    out = subprocess.run(["docker", "run", "--rm", built["id"], "cat", "/opt/requirements.txt",
                          "/opt/flavour"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["six==1.16.0", "plain"]
    (project / "data" / "big.bin").write_text("2" * 4096)
    p, again = run_json("image", "build", "image", cwd=project)
    assert again["reused"] and again["id"] == built["id"]


def test_init_reads_uv_lock_with_uv_and_pyproject_without(tmp_path, home, images):
    """A uv project: its uv.lock (locked here by the real uv) pinned as it stands, read
    without uv (the PATH repro runs with has none); with no uv.lock, the pyproject's
    [project] dependencies, resolved in the image."""
    pyproject = textwrap.dedent('''\
        [project]
        name = "uvp"
        version = "0.1.0"
        requires-python = ">=3.11"
        dependencies = ["six==1.16.0"]
        ''')
    project = make_repo(tmp_path / "uvp", {"pyproject.toml": pyproject, "train.py": UNSEEDED})
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the venv's uv
    done = subprocess.run(["uv", "lock"], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "PATH": path,
                               "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"})
    assert done.returncode == 0, done.stderr
    p, result = run_json("init", cwd=project, timeout=900)
    assert p.returncode == 0, p.stderr
    assert result["dependencies"] == "uv.lock"
    lock = (project / "repro" / "requirements.lock").read_text()
    assert "six==1.16.0 \\\n    --hash=sha256:" in lock and "numpy" not in lock
    (project / "uv.lock").unlink()
    p, result = run_json("init", "--force", cwd=project, timeout=900)
    assert p.returncode == 0 and result["dependencies"] == "pyproject.toml", p.stderr
    assert "six==1.16.0 \\\n" in (project / "repro" / "requirements.lock").read_text()
