"""repro init's inference, without an engine: entry point, argparse params, metric scrapers,
what it writes and when it keeps a file. (Resolving a lock needs the real image: see
tests/integration/test_init.py.)"""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml

from orchestrator.errors import UsageError
from orchestrator.init import edited, init, metric_scrapers, stamped
from orchestrator.projectdeps import hash_pinned, lock_text
from orchestrator.projectparams import params
from orchestrator.projectscan import entry_point
from orchestrator.spec import load_spec
from tests.fakes import FakeEngine

SCRIPT = textwrap.dedent('''\
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--lr", "-l", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=-32)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--data", required=True)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--layers", nargs="+", type=int, default=[1, 2])
    p.add_argument("epochs", type=int)
    a = p.parse_args()
    for step in range(3):
        print(f"step {step} loss={0.5:.3f} val_loss: {0.6}")
    print("test accuracy", 0.9)
    ''')


def test_argparse_options_with_literal_defaults_become_params(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    found = params(tmp_path, entry_point(tmp_path))
    assert found.values == {"lr": 1e-3, "batch-size": -32, "optimizer": "sgd"}
    assert found.skipped == ["--data (no literal default)", "--verbose (a flag or a list)",
                             "--layers (a flag or a list)"]
    assert found.style == "flags" and found.framework == "argparse"


def test_printed_metric_names_get_scrapers_that_read_what_is_printed():
    scrapers = metric_scrapers(SCRIPT)
    assert sorted(scrapers) == ["accuracy", "loss", "val_loss"]
    line = "step 2 loss=0.125 val_loss: 6e-1 test accuracy 0.9"
    got = {k: re.search(v, line)["value"] for k, v in scrapers.items()}
    assert got == {"loss": "0.125", "val_loss": "6e-1", "accuracy": "0.9"}


def test_the_entry_point_is_found_or_asked_for(tmp_path):
    (tmp_path / "util.py").write_text("x = 1\n")
    (tmp_path / "fit.py").write_text("if __name__ == '__main__':\n    pass\n")
    assert entry_point(tmp_path).command == ["python3", "fit.py"]
    (tmp_path / "eval.py").write_text("if __name__ == '__main__':\n    pass\n")
    with pytest.raises(UsageError, match=r"cannot tell which script trains: looked for "
                       r"train.py, .*\(candidates: eval.py, fit.py\); name it: repro init "
                       r"--script PATH \(or --script '-m pkg.module'\)"):
        entry_point(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("")
    assert entry_point(tmp_path).command == ["python3", "src/train.py"]


def test_hash_pinned_requirements_are_recognised():
    assert hash_pinned("a==1 \\\n    --hash=sha256:ab\n# c\nb==2 --hash=sha256:cd\n")
    assert not hash_pinned("a==1 --hash=sha256:ab\nb>=2\n")
    assert not hash_pinned("# nothing\n")


def test_a_lock_line_needs_a_hash():
    items = [{"name": "b", "version": "2", "sha256": "c" * 64, "url": "u"},
             {"name": "A", "version": "1", "sha256": "a" * 64, "url": "u"}]
    assert lock_text(items, "requirements.txt").splitlines()[2:] == [
        "A==1 \\", f"    --hash=sha256:{'a' * 64}", "b==2 \\", f"    --hash=sha256:{'c' * 64}"]
    with pytest.raises(UsageError, match=r"r: x \(git\+https://x\) has no sha256"):
        lock_text([{"name": "x", "version": "1", "sha256": None, "url": "git+https://x"}], "r")


@pytest.mark.process
def test_without_dependencies_init_writes_a_spec_on_the_shipped_image(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "train.py").write_text(SCRIPT)
    done = init(tmp_path, FakeEngine(), lambda _: None)
    assert done["written"] == ["repro.yaml"] and done["next"] == "repro launch"
    spec = load_spec(tmp_path / "repro.yaml").spec  # what it wrote is a valid spec
    assert spec.image.build == "python" and spec.args == "flags" and spec.seed == 0
    assert spec.command == ["python3", "train.py"]  # it runs in a copy of the project
    assert dict(spec.params) == {"lr": 1e-3, "batch-size": -32, "optimizer": "sgd"}
    assert sorted(spec.metrics_from_log) == ["accuracy", "loss", "val_loss"]
    assert spec.code.path is None  # the project is the git work tree


@pytest.mark.process
def test_an_edited_file_is_kept_unless_forced(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    init(tmp_path, FakeEngine(), lambda _: None)
    spec = tmp_path / "repro.yaml"
    assert not edited(spec)
    again = init(tmp_path, FakeEngine(), lambda _: None)
    assert again["unchanged"] == ["repro.yaml"] and again["written"] == []
    spec.write_text(spec.read_text().replace("seed: 0", "seed: 7"))
    assert edited(spec)
    kept = init(tmp_path, FakeEngine(), lambda _: None)
    assert kept["kept"] == ["repro.yaml"] and "seed: 7" in spec.read_text()
    assert "git init" in kept["next"]  # no work tree: launch needs one
    forced = init(tmp_path, FakeEngine(), lambda _: None, force=True)
    assert forced["written"] == ["repro.yaml"] and "seed: 0" in spec.read_text()


def test_a_stamp_covers_exactly_the_text(tmp_path):
    path = tmp_path / "f"
    path.write_text(stamped("a: 1\n"))
    assert not edited(path) and yaml.safe_load(path.read_text()) == {"a": 1}
    path.write_text(path.read_text() + "\n")
    assert edited(path)
    path.write_text("a: 1\n")  # not written by init at all
    assert edited(path)


@pytest.mark.parametrize("imports, glob", [
    ("from torch.utils.tensorboard import SummaryWriter", "**/events.out.tfevents.*"),
    ("import lightning as L", "**/events.out.tfevents.*"),
    ("import pytorch_lightning as pl", "**/events.out.tfevents.*"),
    ("import wandb", "wandb/**"),
])
@pytest.mark.process
def test_init_proposes_excludes_for_the_writers_it_recognises(tmp_path, imports, glob):
    """Writers that name their files after the time and host (or keep run folders of
    their own): their files are recorded as excluded, never compared."""
    from orchestrator.init import inspect

    (tmp_path / "train.py").write_text(f"{imports}\nprint('loss', 0.1)\n")
    assert inspect(tmp_path, "train.py").excludes == [glob]
