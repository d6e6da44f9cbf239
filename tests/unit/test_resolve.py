"""Resolution against a fake engine seam (no Docker): digests, snapshots, pins, env."""

from pathlib import Path

import pytest

from orchestrator.errors import GPUUnavailable, ResolveError, SpecError
from orchestrator.gpu import GPU, select
from orchestrator.params import apply_overrides
from orchestrator.resolve import THREAD_VARS, resolve
from orchestrator.snapshot import take
from orchestrator.spec import load_spec
from orchestrator.store import open_store
from tests import fakes
from tests.helpers import git, make_repo

PIN = "sha256:" + "c" * 64


def FakeEngine() -> fakes.FakeEngine:
    return fakes.FakeEngine(images={"img:latest": "sha256:" + "e" * 64})


SPEC = f"""\
version: 1
name: r
image: {{ref: "img@{PIN}"}}
code: {{path: job}}
command: [python3, /repro/code/train.py, "--lr={{params.lr}}"]
params: {{lr: 0.1}}
seed: 3
inputs:
  data: {{path: data.bin}}
resources: {{cpus: 1.5, memory: 1g}}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"spec.yaml": SPEC, "job/train.py": "print(1)\n",
                                         "data.bin": "0123456789"})


def do(repo: Path, tmp_path: Path, overrides=(), spec="spec.yaml", **kw):
    store = open_store(tmp_path / "home")
    loaded = apply_overrides(load_spec(repo / spec), list(overrides))
    return resolve(loaded, store, FakeEngine(), **kw), store


@pytest.mark.process
def test_resolution_is_content_addressed_and_stable(repo, tmp_path):
    a, store = do(repo, tmp_path)
    b, _ = do(repo, tmp_path)
    r = a.resolved
    assert r.image.digest == "sha256:" + "d" * 64 and r.image.repo_digest == PIN
    assert r.command == ["python3", "/repro/code/train.py", "--lr=0.1"]
    assert r.code.commit == git(repo, "rev-parse", "HEAD").strip() and not r.code.dirty
    assert r.code.subdir == "job" and r.code.files == 1
    assert r.inputs["data"].sha256 == \
        "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882"
    assert r.inputs["data"].stored and a.input_sources["data"] == store.artifacts.local_path(
        r.inputs["data"].sha256)
    assert a.spec_digest == b.spec_digest and a.spec_digest.startswith("sha256:")
    assert (a.snapshot.extracted / "train.py").read_text() == "print(1)\n"


@pytest.mark.process
def test_digest_ignores_host_paths_but_not_content(repo, tmp_path):
    a, _ = do(repo, tmp_path)
    moved = tmp_path / "elsewhere"
    repo.rename(moved)
    b, _ = do(moved, tmp_path)
    assert a.spec_digest == b.spec_digest  # same content at another path
    c, _ = do(moved, tmp_path, overrides=["lr=0.2"])
    assert c.spec_digest != a.spec_digest and c.resolved.command[-1] == "--lr=0.2"


@pytest.mark.process
def test_determinism_env_pins_threads_and_seed(repo, tmp_path):
    env = do(repo, tmp_path)[0].resolved.env
    assert all(env[v] == "2" for v in THREAD_VARS)  # cpus 1.5 -> 2 threads
    assert env["PYTHONHASHSEED"] == env["REPRO_SEED"] == "3"
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and env["TZ"] == "UTC"
    assert env["PYTHONPATH"] == "/repro/lib:/repro/code"  # the code root importable
    # no .pyc among the outputs, and the image's own .pyc files still read
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and "PYTHONPYCACHEPREFIX" not in env


@pytest.mark.process
def test_dirty_code_is_refused_then_recorded_with_allow_dirty(repo, tmp_path):
    (repo / "job" / "train.py").write_text("print(2)\n")
    (repo / "job" / "new.py").write_text("x = 1\n")
    with pytest.raises(ResolveError, match="uncommitted changes .2 file"):
        do(repo, tmp_path)
    res, store = do(repo, tmp_path, allow_dirty=True)
    assert res.resolved.code.dirty and res.resolved.code.files == 2
    diff = store.artifacts.local_path(res.resolved.code.diff).read_text()
    assert "+print(2)" in diff and "# untracked: job/new.py" in diff
    assert (res.snapshot.extracted / "train.py").read_text() == "print(2)\n"


@pytest.mark.process
def test_changes_outside_the_code_folder_do_not_make_it_dirty(repo, tmp_path):
    (repo / "notes.txt").write_text("scratch")
    assert not do(repo, tmp_path)[0].resolved.code.dirty


@pytest.mark.process
def test_snapshot_digest_is_deterministic_across_checkouts(repo, tmp_path):
    store = open_store(tmp_path / "h")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    a = take(repo / "job", store, allow_dirty=False).ref.snapshot
    b = take(clone / "job", open_store(tmp_path / "h2"), allow_dirty=False).ref.snapshot
    assert a == b


@pytest.mark.process
def test_a_store_inside_the_work_tree_leaves_a_subfolder_snapshot_whole(repo, tmp_path):
    """The newcomer's case (make demo with no REPRO_HOME): the store is .repro/ in the
    work tree, unignored, and code.path a subfolder. git 2.39 lists nothing for an exclude
    pathspec there; the snapshot filters the store itself."""
    store = open_store(repo / ".repro")
    (repo / "job" / ".repro").mkdir()  # a stray store below the code, also never code
    (repo / "job" / ".repro" / "x.db").write_text("x")
    snap = take(repo / "job", store, allow_dirty=False)
    assert snap.ref.files == 1 and not snap.ref.dirty
    assert (snap.extracted / "train.py").read_text() == "print(1)\n"
    whole = take(repo, store, allow_dirty=False)  # the whole tree, the store inside it
    assert whole.ref.files == 3 and not whole.ref.dirty


@pytest.mark.process
def test_a_code_folder_whose_files_git_does_not_list_is_refused(repo, tmp_path):
    (repo / "ignored").mkdir()
    (repo / "ignored" / "train.py").write_text("print(1)\n")
    (repo / ".gitignore").write_text("ignored/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    with pytest.raises(ResolveError, match=r"holds files \(ignored/train.py, ...\) but git "
                       "lists none of them"):
        take(repo / "ignored", open_store(tmp_path / "h"), allow_dirty=False)


@pytest.mark.process
def test_the_snapshot_cache_is_per_set_of_files_left_out(repo, tmp_path):
    """Two specs of one commit that record different files by content get the snapshots
    they each describe, not the first one's from the cache."""
    store = open_store(tmp_path / "h")
    left_out = take(repo, store, allow_dirty=False, recorded=[repo / "data.bin"])
    whole = take(repo, store, allow_dirty=False)
    assert (left_out.ref.files, whole.ref.files) == (2, 3)
    assert left_out.ref.snapshot != whole.ref.snapshot


@pytest.mark.process
def test_a_renamed_file_is_one_change_named_by_its_new_path(repo, tmp_path):
    git(repo, "mv", "job/train.py", "job/main.py")
    with pytest.raises(ResolveError, match=r"uncommitted changes \(1 file\(s\): job/main.py\)"):
        take(repo / "job", open_store(tmp_path / "h"), allow_dirty=False)


@pytest.mark.process
def test_input_pin_mismatch_fails_before_launch(repo, tmp_path):
    spec = (repo / "spec.yaml").read_text().replace("{path: data.bin}",
                                                    "{path: data.bin, sha256: " + "ab" * 32 + "}")
    (repo / "spec.yaml").write_text(spec)
    with pytest.raises(SpecError, match=r"spec.yaml:9: inputs.data.sha256: .* not the pinned"):
        do(repo, tmp_path)


@pytest.mark.process
def test_numeric_looking_pin_asks_for_quotes(repo, tmp_path):
    spec = (repo / "spec.yaml").read_text().replace("{path: data.bin}",
                                                    "{path: data.bin, sha256: " + "1" * 64 + "}")
    (repo / "spec.yaml").write_text(spec)
    with pytest.raises(SpecError, match="inputs.data.sha256: must be a quoted string"):
        do(repo, tmp_path, allow_dirty=True)


@pytest.mark.process
def test_missing_code_folder(repo, tmp_path):
    (repo / "spec.yaml").write_text((repo / "spec.yaml").read_text().replace(
        "code: {path: job}", "code: {path: nowhere}"))
    with pytest.raises(SpecError, match="code.path: .*nowhere is not a folder"):
        do(repo, tmp_path, allow_dirty=True)


@pytest.mark.process
def test_a_path_written_from_the_repository_root_gets_the_spec_relative_fix(repo, tmp_path):
    # paths in a spec are relative to the spec file; a spec in specs/ naming "job" from the
    # root is told to write "../job"
    (repo / "specs").mkdir()
    (repo / "specs" / "spec.yaml").write_text((repo / "spec.yaml").read_text())
    with pytest.raises(SpecError, match=r"code.path: .*did you mean '\.\./job'\?"):
        do(repo, tmp_path, allow_dirty=True, spec="specs/spec.yaml")


@pytest.mark.process
def test_missing_input(repo, tmp_path):
    (repo / "data.bin").unlink()
    with pytest.raises(SpecError, match="inputs.data.path: .*does not exist"):
        do(repo, tmp_path, allow_dirty=True)


@pytest.mark.process
def test_tag_is_recorded_as_digest_and_refused_in_strict_mode(repo, tmp_path):
    spec = (repo / "spec.yaml").read_text().replace(f'"img@{PIN}"', '"img:latest"')
    (repo / "spec.yaml").write_text(spec)
    git(repo, "commit", "-qam", "tag")
    res, _ = do(repo, tmp_path)
    assert res.resolved.image.digest == "sha256:" + "e" * 64
    assert any("is a tag" in w for w in res.warnings)
    with pytest.raises(SpecError, match="image.ref: 'img:latest' is a tag, not pinned"):
        do(repo, tmp_path, strict=True)


@pytest.mark.process
def test_secret_values_are_not_in_the_resolved_spec(repo, tmp_path, monkeypatch):
    (repo / "spec.yaml").write_text((repo / "spec.yaml").read_text() + "secrets: [API_TOKEN]\n")
    git(repo, "commit", "-qam", "secret")
    with pytest.raises(SpecError, match="API_TOKEN is not set in this shell"):
        do(repo, tmp_path)
    monkeypatch.setenv("API_TOKEN", "hunter2-value")
    res, _ = do(repo, tmp_path)
    assert res.secret_env == {"API_TOKEN": "hunter2-value"}
    assert "hunter2-value" not in res.resolved.model_dump_json()
    assert res.resolved.secrets == ["API_TOKEN"] and res.resolved.secret_env == []


@pytest.mark.process
def test_a_secret_too_short_to_redact_or_inside_a_param_is_refused(repo, tmp_path,
                                                                     monkeypatch):
    text = (repo / "spec.yaml").read_text()
    (repo / "spec.yaml").write_text(text + "secrets: [{name: API_TOKEN, env: true}]\n")
    git(repo, "commit", "-qam", "secret")
    monkeypatch.setenv("API_TOKEN", "x")  # redacting 'x' would shred every log
    with pytest.raises(SpecError, match="secret API_TOKEN is 1 character"):
        do(repo, tmp_path)
    monkeypatch.setenv("API_TOKEN", "hunter2-value")
    res, _ = do(repo, tmp_path)
    assert res.resolved.secret_env == ["API_TOKEN"]
    loaded = apply_overrides(load_spec(repo / "spec.yaml"), ["lr=0.5"])
    assert loaded.spec.params["lr"] == 0.5
    (repo / "spec.yaml").write_text(text.replace("params: {", "params: {tok: x, ")
                                    + "secrets: [API_TOKEN]\n")
    git(repo, "commit", "-qam", "param")
    loaded = apply_overrides(load_spec(repo / "spec.yaml"), ["tok=Bearer hunter2-value"])
    with pytest.raises(SpecError, match="params.tok: holds the value of a secret"):
        resolve(loaded, open_store(tmp_path / "h2"), FakeEngine(), allow_dirty=True)


def test_redaction_covers_every_line_of_a_multi_line_secret():
    from orchestrator.resolve import Redactor

    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2E\nQQQQ\n-----END KEY-----"
    r = Redactor([key])
    assert r.redact(f"key: {key}") == "key: ***"
    assert r.redact("line 2 is AAAAB3NzaC1yc2E, and 3 QQQQ") == "line 2 is ***, and 3 ***"
    assert r.redact("a 1-char line is left alone: Q") == "a 1-char line is left alone: Q"


def gpu(i, name, mem):
    return GPU(index=i, name=name, uuid=f"GPU-{i}", memory_gb=mem, driver="550", cuda="12.4")


def test_gpu_selection():
    inv = [gpu(0, "NVIDIA A10", 24), gpu(1, "NVIDIA H100 80GB HBM3", 80)]
    assert select({"count": 1, "model": "h100"}, inv, None) == [inv[1]]
    assert select({"count": 1, "min_memory_gb": 40}, inv, None) == [inv[1]]
    assert select({"count": 2}, inv, None) == inv
    with pytest.raises(GPUUnavailable, match="needs 1 GPU.*A100.*this host has NVIDIA A10"):
        select({"count": 1, "model": "A100"}, inv, None)
    with pytest.raises(GPUUnavailable, match="none: no driver"):
        select({"count": 1}, [], "no driver")
    assert select(None, [], "no driver") == []


@pytest.mark.process
def test_params_reach_env_flags_and_the_environment_without_edits(repo, tmp_path):
    """{params.x} in env values, args: flags for argparse scripts, REPRO_PARAM_<NAME>."""
    text = (repo / "spec.yaml").read_text().replace(
        "params: {lr: 0.1}", "params: {lr: 0.1, n-layers: 3, aug: true}")
    (repo / "spec.yaml").write_text(text + "env: {LR: 'lr={params.lr}'}\nargs: flags\n")
    git(repo, "commit", "-qam", "flags")
    res, _ = do(repo, tmp_path, overrides=["lr=0.5"])
    assert res.resolved.env["LR"] == "lr=0.5"
    assert res.resolved.command[-3:] == ["--lr=0.5", "--n-layers=3", "--aug=true"]
    from orchestrator.params import param_env

    assert param_env(res.resolved.params) == {"REPRO_PARAM_LR": "0.5",
                                              "REPRO_PARAM_N_LAYERS": "3",
                                              "REPRO_PARAM_AUG": "true"}
    (repo / "spec.yaml").write_text(text + "env: {LR: '{params.rate}'}\n")
    git(repo, "commit", "-qam", "typo")
    with pytest.raises(SpecError, match=r"env.LR: \{params.rate\} names no param"):
        do(repo, tmp_path)


def test_metrics_are_scraped_from_the_output_by_named_groups(tmp_path):
    from orchestrator.outputs import scrape_metrics

    log = tmp_path / "job.log"
    log.write_text("epoch 1 train loss=0.91 val loss: 1.2\nepoch 2 train loss=0.5 val loss: "
                   "0.8\nnot a number loss=nan\n")
    warnings: list[str] = []
    points = scrape_metrics(log, {"loss": r"train loss=(?P<value>[-0-9.eE+]+)",
                                  "val loss": r"val loss: (?P<value>[-0-9.eE+]+)",
                                  "acc": r"acc=(?P<value>[0-9.]+)"}, warnings)
    assert points == [("loss", 0, 0.91), ("loss", 1, 0.5), ("val loss", 0, 1.2),
                      ("val loss", 1, 0.8)]
    assert warnings == ["metrics_from_log: acc: no line of the output matched"]


def test_splits_on_one_line_are_series_of_their_own(tmp_path):
    """`train loss 0.3 val loss 0.5` is two series, train/loss and val/loss, each numbered
    from 0, as init's scrapers read the lines real projects print; the live line agrees."""
    from orchestrator.init import metric_scrapers
    from orchestrator.live import LiveMetrics
    from orchestrator.outputs import scrape_metrics

    text = ("step 0: train loss 1.2000, val loss 1.3000\n"
            "iter 1: loss 2.3000, time 30.12ms\n"
            "Train Epoch: 1 [0/600 (0%)]\tLoss: 2.302585\n"
            "Test set: Average loss: 0.0500, Accuracy: 98/100 (98%)\n"
            "step 2: train loss 1.1000, val loss 1.2500\n"
            "| end of epoch 1 | valid loss  5.20 | valid ppl 181.27\n")
    (tmp_path / "job.log").write_text(text)
    scrapers = metric_scrapers('print("loss", "accuracy", "ppl")')
    points = scrape_metrics(tmp_path / "job.log", scrapers, [])
    series: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in points:
        series.setdefault(name, []).append((step, value))
    assert series == {"train/loss": [(0, 1.2), (1, 2.302585), (2, 1.1)],
                      "val/loss": [(0, 1.3), (1, 1.25)], "loss": [(0, 2.3)],
                      "test/loss": [(0, 0.05)], "valid/loss": [(0, 5.2)],
                      "test/accuracy": [(0, 98.0)], "valid/ppl": [(0, 181.27)]}
    seen: list[dict] = []
    live = LiveMetrics(scrapers, tmp_path / "none.jsonl", seen.append)
    live.scrape(text)
    assert live.latest["train/loss"] == (2, 1.1) and live.latest["val/loss"] == (1, 1.25)
    # a split that is no name (a control character) takes no series
    (tmp_path / "bad.log").write_text("\x1b loss 1\n")
    assert scrape_metrics(tmp_path / "bad.log", {"loss": r"(?P<split>\x1b) loss (?P<value>1)"},
                          []) == []


def test_a_scraper_needs_a_value_group(tmp_path):
    from tests.unit.test_spec import GOOD, write

    with pytest.raises(SpecError, match="needs a group named value"):
        load_spec(write(tmp_path, GOOD + "metrics_from_log: {loss: 'loss=([0-9.]+)'}\n"))
