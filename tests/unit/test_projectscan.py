"""What `repro init` reads from a project's files (no engine, no project code run): entry
points of the layouts public projects have, params of argparse, click and Hydra apps, the
imports it follows, the data git does not hold, and what it never reads."""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import UsageError
from orchestrator.init import inspect, spec_text
from orchestrator.projectparams import params
from orchestrator.projectscan import (
    Imports,
    data_paths,
    entry_point,
    imports,
    read_text,
    unprovided,
)
from orchestrator.spec import load_spec
from tests.helpers import make_repo


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    return make_repo(tmp_path / "p", files)


@pytest.mark.process
def test_a_module_of_an_in_repo_package_runs_with_python_m(tmp_path):
    root = project(tmp_path, {"nanolm/__init__.py": "", "nanolm/model.py": "X = 1\n",
                              "nanolm/train.py": "from .model import X\nimport numpy\n"})
    entry = entry_point(root)
    assert entry.command == ["python3", "-m", "nanolm.train"] and entry.path_root == ""
    found = imports(root, entry)
    assert sorted(found.files) == ["nanolm/__init__.py", "nanolm/model.py", "nanolm/train.py"]
    assert list(found.third_party) == ["numpy"]


@pytest.mark.process
def test_a_src_layout_puts_src_on_the_path(tmp_path):
    root = project(tmp_path, {"src/charlm/__init__.py": "", "src/charlm/train.py": "",
                              "pyproject.toml": "[project]\nname = 'charlm'\n"})
    entry = entry_point(root)
    assert entry.command == ["python3", "-m", "charlm.train"] and entry.path_root == "src"
    assert entry_point(root, "-m charlm.train").script == "src/charlm/train.py"
    with pytest.raises(UsageError, match=r"--script '-m nope.train': no nope/train.py"):
        entry_point(root, "-m nope.train")


@pytest.mark.process
def test_project_scripts_name_the_entry_when_nothing_else_does(tmp_path):
    root = project(tmp_path, {
        "pyproject.toml": "[project]\nname = 'x'\n[project.scripts]\nfit = 'x.cli:main'\n",
        "x/__init__.py": "", "x/cli.py": "def main():\n    return 0\n"})
    entry = entry_point(root)
    assert entry.command == ["python3", "-c", "import sys; from x.cli import main; "
                                              "sys.exit(main())"]


CLICK = textwrap.dedent('''\
    import click

    @click.command()
    @click.option("--epochs", "-e", default=3, type=int)
    @click.option("--learning-rate", default=0.1)
    @click.option("--data", default="data/names.txt")
    @click.option("--out-dir", default="out")
    @click.option("--verbose/--quiet", default=False)
    @click.option("--tag", multiple=True)
    @click.option("--max-steps", default=-1)
    @click.argument("config")
    def main(epochs, learning_rate, data, out_dir, verbose, tag, max_steps, config):
        print(f"epoch loss {0.1}")

    if __name__ == "__main__":
        main()
    ''')


@pytest.mark.process
def test_click_options_become_params(tmp_path):
    root = project(tmp_path, {"train.py": CLICK})
    found = params(root, entry_point(root))
    assert found.framework == "click" and found.style == "flags"
    assert found.values == {"epochs": 3, "learning-rate": 0.1, "data": "data/names.txt",
                            "out-dir": "out", "max-steps": -1}
    assert found.skipped == ["--verbose (a flag or a list)", "--tag (a flag or a list)",
                             "config (a positional argument)"]
    assert found.endless == ["--max-steps defaults to -1"]
    assert found.data_hints == ["data/names.txt"]  # not out-dir: an output


HYDRA = textwrap.dedent('''\
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base=None, config_path="conf", config_name="config")
    def main(cfg: DictConfig) -> None:
        print("val accuracy", 0.9)

    if __name__ == "__main__":
        main()
    ''')


@pytest.mark.process
def test_a_hydra_apps_config_leaves_are_overrides(tmp_path):
    root = project(tmp_path, {
        "train.py": HYDRA,
        "conf/config.yaml": "defaults:\n  - model: forest\n  - _self_\n"
                            "data:\n  path: data/train.csv\n  test_size: 0.25\n"
                            "seed: 0\nname: ${model.kind}\nlayers: [1, 2]\ntrain:\n"
                            "  max_steps: null\n",
        "conf/model/forest.yaml": "kind: forest\nn_estimators: 50\nmax_depth: 4\n"})
    found = params(root, entry_point(root))
    assert found.framework == "hydra" and found.style == "overrides"
    assert found.values == {"model": "forest", "data.path": "data/train.csv",
                            "data.test_size": 0.25, "seed": 0, "model.kind": "forest",
                            "model.n_estimators": 50, "model.max_depth": 4}
    assert "name (an interpolation or a required value)" in found.skipped
    assert "layers (not a single value)" in found.skipped
    assert found.extra_args == ["hydra.run.dir=outputs/run"]
    assert found.excludes == ["outputs/run/*.log"]
    assert found.endless == ["train.max_steps is null"]
    # the spec init writes from it loads, and passes them back as key=value
    plan = inspect(root)
    (root / "repro.yaml").write_text(spec_text(plan, False, "python", own_code=False))
    spec = load_spec(root / "repro.yaml").spec
    assert spec.args == "overrides" and spec.command[-1] == "hydra.run.dir=outputs/run"
    assert spec.outputs.exclude == ["outputs/run/*.log"]
    assert sorted(spec.metrics_from_log) == ["accuracy"]


@pytest.mark.process
def test_imports_are_followed_through_the_project_and_optional_ones_left_out(tmp_path):
    root = project(tmp_path, {
        "train.py": "import argparse\nfrom lib.data import load\nimport sklearn.linear_model\n"
                    "from torch.utils.tensorboard import SummaryWriter\n",
        "lib/__init__.py": "", "lib/data.py": "import pandas as pd\ntry:\n    import ujson\n"
                                              "except ImportError:\n    ujson = None\n"
                                              "def load():\n    return pd.read_csv('d.csv')\n",
        "tests/test_x.py": "import pytest\n"})
    found = imports(root, entry_point(root))
    assert sorted(found.third_party) == ["pandas", "sklearn", "torch.utils.tensorboard"]
    assert "d.csv" in found.strings
    assert unprovided(found, {"pandas", "scikit-learn"}, {"os"}) == {
        "torch.utils.tensorboard": "train.py"}  # tensorboard: a distribution of its own
    assert unprovided(Imports(third_party={"cv2": "a.py"}), {"opencv-python-headless"},
                      set()) == {}


@pytest.mark.process
def test_data_git_does_not_hold_is_found_and_outputs_are_not(tmp_path):
    root = project(tmp_path, {".gitignore": "data/raw/\nout/\nnames.txt\n", "train.py": "",
                              "data/README.md": "how to get the data\n", "config.csv": "a\n"})
    (root / "data" / "raw").mkdir()
    (root / "data" / "raw" / "x.bin").write_bytes(b"1")
    (root / "out").mkdir()
    (root / "out" / "model.pt").write_bytes(b"1")
    (root / "names.txt").write_text("ada\n")
    os.mkfifo(root / "pipe.txt")
    (root / "outside").symlink_to(tmp_path)
    found, notes = data_paths(root, {"./data", "names.txt", "out", "config.csv", "pipe.txt",
                                     "outside", "/etc/passwd", "../x", "nothing.csv", ""})
    assert [(d.path, d.kind, d.name) for d in found] == [("data", "dir", "data"),
                                                         ("names.txt", "file", "names.txt")]
    assert notes == ["outside is a link out of the project: not declared (declare it as an "
                     "input in repro.yaml if the job reads it)",
                     "pipe.txt is not a regular file or folder: not declared"]


@pytest.mark.process
def test_init_never_reads_a_fifo_or_a_link_out_of_the_project(tmp_path):
    root = project(tmp_path, {"train.py": "print('loss', 1)\n"})
    os.mkfifo(root / "requirements.txt")  # once: open() would block forever
    (root / "conf.yaml").symlink_to("/etc/hostname")
    assert read_text(root, "requirements.txt") is None
    assert read_text(root, "conf.yaml") is None
    from orchestrator.init import init
    from tests.fakes import FakeEngine

    done = init(root, FakeEngine(), lambda _: None)  # returns: nothing blocked on the FIFO
    assert done["dependencies"] is None
    assert "requirements.txt is not a regular file in the project: not read" in done["notes"]


@pytest.mark.process
def test_what_init_writes_for_a_package_with_data_is_a_valid_spec(tmp_path):
    root = project(tmp_path, {".gitignore": "data/\n",
                              "src/charlm/__init__.py": "",
                              "src/charlm/train.py": "import argparse\np = argparse."
                              "ArgumentParser()\np.add_argument('--input-file', default="
                              "'data/names.txt')\np.add_argument('--max-steps', type=int, "
                              "default=-1)\nprint('step train loss 1 test loss 2')\n"})
    (root / "data").mkdir()
    (root / "data" / "names.txt").write_text("ada\ngrace\n")
    from orchestrator.init import init
    from tests.fakes import FakeEngine

    done = init(root, FakeEngine(), lambda _: None)
    assert done["command"] == ["python3", "-m", "charlm.train"]
    assert done["inputs"] == {"names.txt": "data/names.txt"}  # the file the code names
    assert any("--max-steps defaults to -1 (it may never end)" in n for n in done["notes"])
    spec = load_spec(root / "repro.yaml").spec
    assert spec.env == {"PYTHONPATH": "/repro/code/src"}
    assert spec.inputs["names.txt"].mount == "data/names.txt"
    assert spec.inputs["names.txt"].sha256 == hashlib.sha256(b"ada\ngrace\n").hexdigest()
    assert dict(spec.params) == {"input-file": "data/names.txt", "max-steps": -1}
    doc = yaml.safe_load((root / "repro.yaml").read_text())
    assert doc["command"] == ["python3", "-m", "charlm.train"]


@pytest.mark.process
def test_torch_from_pypi_is_named_before_the_lock_with_the_cpu_routes(tmp_path, monkeypatch):
    import orchestrator.init as init_module
    from orchestrator.init import init
    from tests.fakes import FakeEngine

    root = project(tmp_path, {"train.py": "print('loss', 1)\n", "requirements.txt": "torch\n"})
    events: list[str] = []  # what init said, and when it locked, in order

    def resolved(plan, base, image, declared, on_line):
        events.append("<locking>")
        return ("torch==2.5.1 --hash=sha256:" + "a" * 64 + "\n" + "".join(
            f"nvidia-{n}-cu12==12.4 --hash=sha256:{'b' * 64}\n" for n in ("cublas", "cudnn")))

    monkeypatch.setattr(init_module, "_resolved_lock", resolved)
    done = init(root, FakeEngine(), events.append)
    first = next(i for i, line in enumerate(events) if "several GiB" in line)
    assert first < events.index("<locking>")  # said before it locks
    assert "repro init --base python-torch --force" in events[first]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in events[first]
    assert any("the lock holds 2 NVIDIA CUDA package(s) (nvidia-cublas-cu12, "
               "nvidia-cudnn-cu12): several GiB in the image" in n for n in done["notes"])


def test_a_lock_keeps_the_index_its_requirements_name():
    from orchestrator.projectdeps import lock_text

    text = lock_text([{"name": "torch", "version": "2.5.1+cpu", "sha256": "a" * 64,
                       "url": "https://download.pytorch.org/whl/cpu/torch.whl"}],
                     "requirements.txt",
                     "--extra-index-url https://download.pytorch.org/whl/cpu\ntorch==2.5.1+cpu\n")
    assert "\n--extra-index-url https://download.pytorch.org/whl/cpu\ntorch==2.5.1+cpu \\\n" \
        in text


@pytest.mark.process
def test_sources_that_are_a_fifo_or_a_link_to_a_device_are_skipped(tmp_path):
    """Issue 21 L4: a `*.py` linked to /dev/zero exhausted memory, a FIFO hung init."""
    root = project(tmp_path, {"train.py": "import utils\nimport model\nprint('loss', 1)\n"})
    os.mkfifo(root / "utils.py")
    (root / "model.py").symlink_to("/dev/zero")
    (root / "run.py").symlink_to("/dev/zero")  # an entry point name, too
    found = imports(root, entry_point(root))
    assert found.files == ["train.py"]  # the others were never opened
    from orchestrator.init import init
    from tests.fakes import FakeEngine

    done = init(root, FakeEngine(), lambda _: None)
    assert done["command"] == ["python3", "train.py"] and done["metrics"] == ["loss"]


@pytest.mark.process
def test_init_never_writes_through_a_link_or_into_a_fifo(tmp_path):
    from orchestrator.init import init
    from tests.fakes import FakeEngine

    root = project(tmp_path, {"train.py": "print('loss', 1)\n"})
    (root / "repro.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    with pytest.raises(UsageError, match="repro.yaml: a link or not a regular file"):
        init(root, FakeEngine(), lambda _: None)
    assert not (tmp_path / "elsewhere.yaml").exists()
    (root / "repro.yaml").unlink()
    os.mkfifo(root / "repro.yaml")  # reading it to compare would block forever
    with pytest.raises(UsageError, match="repro.yaml: a link or not a regular file"):
        init(root, FakeEngine(), lambda _: None)
