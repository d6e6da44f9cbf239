import json
import os

import pytest

from orchestrator.outputs import collect, final_metrics, glob_regex, read_series, wanted
from orchestrator.runtime.repro_boot import check, parse_lock
from orchestrator.store import open_store


@pytest.mark.parametrize("glob, path, hit", [
    ("**", "a/b/c.npy", True),
    ("*.json", "metrics.json", True),
    ("*.json", "sub/metrics.json", False),
    ("**/*.json", "metrics.json", True),
    ("**/*.json", "a/b/m.json", True),
    ("weights/*.npy", "weights/w1.npy", True),
    ("weights/*.npy", "weights/deep/w1.npy", False),
    ("w?.npy", "w1.npy", True),
    ("w[1].npy", "w[1].npy", True),
])
def test_globs(glob, path, hit):
    assert bool(glob_regex(glob).match(path)) is hit


def test_collect_stores_matching_files_and_never_follows_symlinks(tmp_path):
    out = tmp_path / "out"
    (out / "weights").mkdir(parents=True)
    (out / "weights" / "w.npy").write_bytes(b"w" * 1000)
    (out / "metrics.json").write_text("{}")
    (out / "scratch.tmp").write_text("x")
    secret = tmp_path / "host-secret"
    secret.write_text("do not store")
    os.symlink(secret, out / "weights" / "leak.npy")
    os.symlink(tmp_path, out / "weights" / "dirlink")
    store = open_store(tmp_path / "h")
    found = collect(out, ["weights/**", "metrics.json"], store.artifacts)
    stored = found.stored
    assert sorted(stored) == ["metrics.json", "weights/w.npy"]
    assert found.skipped == {"weights/dirlink": "symlink (not followed)",
                       "weights/leak.npy": "symlink (not followed)"}
    assert store.artifacts.local_path(stored["weights/w.npy"].sha256).read_bytes() == b"w" * 1000


def test_collect_skips_files_over_the_limit(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "big").write_bytes(b"x" * 100)
    (out / "small").write_bytes(b"x")
    found = collect(out, ["**"], open_store(tmp_path / "h").artifacts, limit=10)
    assert list(found.stored) == ["small"]
    assert "larger than the output limit" in found.skipped["big"]
    assert found.problems == ["output big is larger than the output limit (10 bytes) and was "
                              "not stored; raise REPRO_OUTPUT_LIMIT or write less"]


def test_metrics_from_series_and_metrics_json(tmp_path):
    meta, out = tmp_path / "meta", tmp_path / "out"
    meta.mkdir()
    out.mkdir()
    lines = [{"name": "loss", "value": 1.0, "step": 0}, {"name": "loss", "value": 0.5,
             "step": 1}, {"name": "acc", "value": 0.3, "step": None}, "garbage",
             {"name": "acc", "value": None, "step": None}]
    (meta / "metrics.jsonl").write_text("\n".join(
        json.dumps(x) if isinstance(x, dict) else x for x in lines))
    series = read_series(meta)
    assert series == [("loss", 0, 1.0), ("loss", 1, 0.5), ("acc", 0, 0.3)]
    (out / "metrics.json").write_text(json.dumps({"acc": 0.9, "eval": {"f1": 0.8},
                                                  "note": "hi"}))
    warnings: list[str] = []
    assert final_metrics(series, out / "metrics.json", warnings) == {
        "loss": 0.5, "acc": 0.9, "eval.f1": 0.8}
    assert warnings == ["metrics.json: note is not a finite number; ignored"]


def test_parse_lock_accepts_hashes_comments_and_continuations():
    text = ("# comment\n-i https://example.invalid/simple\n"
            "numpy==1.24.2 \\\n    --hash=sha256:" + "a" * 64 + "\n"
            "Torch_Vision==0.1 ; python_version > '3'\nrequests[socks]==2.0  # why\n")
    assert parse_lock(text) == {"numpy": "1.24.2", "torch-vision": "0.1", "requests": "2.0"}


def test_parse_lock_refuses_unpinned():
    with pytest.raises(ValueError, match="line 2: 'torch>=2' is not pinned"):
        parse_lock("numpy==1\ntorch>=2\n")


def test_lock_check_names_each_offender():
    found = {"numpy": ("numpy", "1.26.4")}
    assert check({"numpy": "1.24.2", "scipy": "1.0"}, found) == [
        "numpy==1.24.2 is pinned but 1.26.4 is installed",
        "scipy==1.0 is pinned but not installed"]
    assert check({"numpy": "1.26.4"}, found) == []


def test_wanted_defaults():
    assert wanted("anything/at/all", ["**"])


def test_boot_finds_the_distributions_importlib_metadata_finds(tmp_path, monkeypatch):
    from importlib import metadata

    from orchestrator.runtime.repro_boot import installed, normalize

    expected: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        expected.setdefault(normalize(dist.metadata["Name"]), (dist.metadata["Name"],
                                                               dist.version))
    assert installed() == expected  # this venv: ~40 distributions

    # the three layouts: wheel dist-info, egg-info folder, Debian's egg-info file
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "Torch_Vision-0.1.dist-info").mkdir(parents=True)
    (first / "Torch_Vision-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torch_vision\nVersion: 0.1\n\nName: not-a-header\n")
    (first / "six-1.0.egg-info").mkdir()
    (first / "six-1.0.egg-info" / "PKG-INFO").write_text("Name: six\nVersion: 1.0\n")
    (second / "numpy-1.24.2.egg-info").parent.mkdir()
    (second / "numpy-1.24.2.egg-info").write_text("Name: numpy\r\nVersion: 1.24.2\r\n")
    (second / "six-2.0.dist-info").mkdir()
    (second / "six-2.0.dist-info" / "METADATA").write_text("Name: six\nVersion: 2.0\n")
    monkeypatch.setattr("sys.path", [str(first), str(tmp_path / "missing"), str(second)])
    assert installed() == {"torch-vision": ("torch_vision", "0.1"), "six": ("six", "1.0"),
                           "numpy": ("numpy", "1.24.2")}


def test_lock_markers_are_evaluated_with_packaging_and_skips_are_named():
    from orchestrator.runtime.repro_boot import applicable, lock_entries

    entries = lock_entries('numpy==1.24.2\ncolorama==0.4.6 ; sys_platform == "win32"\n'
                           'tomli==2.0.1 ; python_version < "3.11" \\\n  --hash=sha256:'
                           + "a" * 64 + '\nrich==13.0 ; python_version >= "3.8"\n')
    pins, skipped = applicable(entries)  # here, packaging is importable
    assert pins == {"numpy": "1.24.2", "rich": "13.0"}
    assert skipped == ['colorama==0.4.6 ; sys_platform == "win32"',
                       'tomli==2.0.1 ; python_version < "3.11"']


def test_a_distribution_build_gets_a_hint_to_freeze_the_image():
    problems = check({"torch": "1.13.1", "numpy": "2.0"},
                     {"torch": ("torch", "1.13.0a0+gitunknown"), "numpy": ("numpy", "1.26")})
    assert problems[0] == "numpy==2.0 is pinned but 1.26 is installed"
    assert "repro image freeze IMAGE > requirements.lock" in problems[1]
