"""Content-aware differences: one ULP of noise told apart from different weights, the
first differing JSON path and text line, and hostile files that never break a verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.content import annotate, explain


def _pair(tmp_path, name, a, b):
    pa, pb = tmp_path / f"a-{name}", tmp_path / f"b-{name}"
    for p, v in ((pa, a), (pb, b)):
        if isinstance(v, np.ndarray):
            np.save(p.with_suffix(""), v) if False else np.save(open(p, "wb"), v)
        else:
            p.write_bytes(v if isinstance(v, bytes) else v.encode())
    return pa, pb


def test_one_ulp_of_noise_is_told_apart_from_different_weights(tmp_path):
    w = np.linspace(0.1, 1.0, 4096, dtype=np.float32)
    noisy = w.copy()
    noisy[[5, 77, 4000]] = np.nextafter(w[[5, 77, 4000]], np.float32(2))
    a, b = _pair(tmp_path, "w1.npy", w, noisy)
    d = explain("w1.npy", a, b)
    assert d["differing"] == 3 and d["max_ulp"] == 1 and d["first_index"] == [5]
    assert d["summary"] == "3 of 4096 values differ, at most 1 ULP"
    other = (w + 0.31).astype(np.float32)
    a, b = _pair(tmp_path, "w2.npy", w, other)
    d = explain("w2.npy", a, b)
    assert d["summary"].startswith("all values differ, max abs 0.31")
    a, b = _pair(tmp_path, "w3.npy", w, w.reshape(64, 64))
    assert "shape/dtype changed" in explain("w3.npy", a, b)["summary"]


@pytest.mark.process
def test_json_text_and_csv_name_the_first_difference(tmp_path):
    a, b = _pair(tmp_path, "m.json", json.dumps({"acc": 0.91, "cfg": {"lr": 0.1}}),
                 json.dumps({"acc": 0.93, "cfg": {"lr": 0.1}}))
    d = explain("m.json", a, b)
    assert d["first_path"] == ".acc" and abs(d["max_abs"] - 0.02) < 1e-12
    a, b = _pair(tmp_path, "s.csv", "x,y\n1,2\n3,4\n", "x,y\n1,2\n3,5\n")
    d = explain("s.csv", a, b)
    assert d["first_line"] == 3 and d["original"] == "3,4" and d["replay"] == "3,5"
    # not a format repro compares itself: diffoscope's report (installed by ensure-docker)
    assert explain("model.bin", a, b)["tool"] == "diffoscope"


def test_hostile_files_are_a_note_never_a_crash(tmp_path):
    a, b = _pair(tmp_path, "x.npy", b"\x93NUMPY garbage", b"not numpy at all")
    assert explain("x.npy", a, b)["summary"].startswith("not compared by content")
    obj = np.array([{"a": 1}], dtype=object)  # a pickle inside: never loaded
    pa, pb = tmp_path / "o1.npy", tmp_path / "o2.npy"
    np.save(open(pa, "wb"), obj, allow_pickle=True)
    np.save(open(pb, "wb"), obj, allow_pickle=True)
    assert "not compared" in explain("o.npy", pa, pb)["summary"]
    a, b = _pair(tmp_path, "d.json", "[" * 5000, "{}")
    assert "not compared" in explain("d.json", a, b)["summary"]


def test_a_verdict_gets_a_content_line_per_differing_output(tmp_path):
    a, b = _pair(tmp_path, "s.txt", "one\ntwo\n", "one\nTWO\n")
    from orchestrator.record import Verdict

    verdict = Verdict.model_validate({"result": "differs", "outputs": {"differ": [
        {"path": "s.txt", "original": {"sha256": "a" * 64, "size": 8},
         "replay": {"sha256": "b" * 64, "size": 8}}]}})
    annotate(verdict, {"a" * 64: a, "b" * 64: b}.__getitem__)
    assert (verdict.outputs.differ[0].content or {})["summary"] == \
        "1 of 2 lines differ, first at line 2"


def _safetensors(path, tensors: dict, header_extra: dict | None = None) -> None:
    """The safetensors format by its spec: 8-byte little-endian header length, a JSON
    header (dtype, shape, data_offsets per tensor), the raw bytes."""
    names = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}
    header, blob = {"__metadata__": {"format": "pt"}}, b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    header.update(header_extra or {})
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + blob)


def test_safetensors_are_compared_tensor_by_tensor_and_by_place(tmp_path):
    from orchestrator.content import places

    w = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    moved = w.copy()
    moved[3, 4] = np.nextafter(moved[3, 4], np.float32(2))
    steps = np.arange(4, dtype=np.int64)
    _safetensors(tmp_path / "a.safetensors", {"w": w, "step": steps})
    _safetensors(tmp_path / "b.safetensors", {"w": moved, "step": steps})
    d = explain("model.safetensors", tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert d["kind"] == "safetensors"
    assert d["arrays"]["w"]["summary"] == "1 of 256 values differ, at most 1 ULP"
    assert d["arrays"]["w"]["first_index"] == [3, 4] and d["arrays"]["step"]["differing"] == 0
    assert d["summary"] == "w: 1 of 256 values differ, at most 1 ULP"
    assert places("m.safetensors", tmp_path / "a.safetensors",
                  tmp_path / "b.safetensors") == frozenset({"w[52]"})
    # hostile headers: offsets past the end, an absurd length, not a header at all
    _safetensors(tmp_path / "c.safetensors", {"w": w},
                 {"w": {"dtype": "F32", "shape": [16, 16], "data_offsets": [0, 10 ** 9]}})
    (tmp_path / "d.safetensors").write_bytes((2 ** 60).to_bytes(8, "little") + b"{}")
    (tmp_path / "e.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00[]")
    _safetensors(tmp_path / "f.safetensors", {"w": w},
                 {"w": {"dtype": "F32", "shape": [-16, -16], "data_offsets": [0, 1024]}})
    for bad in ("c", "d", "e", "f"):
        d = explain("m.safetensors", tmp_path / "a.safetensors", tmp_path / f"{bad}.safetensors")
        assert d["summary"].startswith("not compared by content"), d


def test_png_pixels_that_differ(tmp_path, monkeypatch):
    from PIL import Image

    img = np.zeros((20, 30, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    img[5, 7] = [0, 40, 0]
    img[9, 2] = [1, 0, 0]
    Image.fromarray(img).save(tmp_path / "b.png")
    d = explain("plot.png", tmp_path / "a.png", tmp_path / "b.png")
    assert d["summary"] == "2 of 600 pixels differ, first at x=7 y=5, max channel difference 40"
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(tmp_path / "c.png")
    assert "image changed: RGB 30x20 -> L 10x10" in explain(
        "plot.png", tmp_path / "a.png", tmp_path / "c.png")["summary"]
    import orchestrator.content as content

    monkeypatch.setattr(content, "PNG_PIXELS", 500)  # counted from the headers, not decoded
    assert explain("plot.png", tmp_path / "a.png", tmp_path / "b.png")["summary"] == \
        "not compared by content (over 500 pixels)"
    monkeypatch.undo()
    (tmp_path / "d.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert explain("plot.png", tmp_path / "a.png", tmp_path / "d.png")["summary"].startswith(
        "not compared by content")


@pytest.mark.process
def test_other_formats_go_to_diffoscope(tmp_path):
    import tarfile

    for name, text in (("a", b"epoch 1\n"), ("b", b"epoch 2\n")):
        (tmp_path / "ckpt.txt").write_bytes(text)
        with tarfile.open(tmp_path / f"{name}.tar", "w") as t:
            t.add(tmp_path / "ckpt.txt", arcname="ckpt.txt")
    d = explain("bundle.tar", tmp_path / "a.tar", tmp_path / "b.tar")
    assert d["tool"] == "diffoscope" and d["summary"] == "diffoscope: file list; ckpt.txt"
    assert "ckpt.txt" in " ".join(d["report"])


def test_pt_checkpoints_load_weights_only_through_torch(tmp_path, monkeypatch):
    """torch is not installed here: a stand-in checks the glue (a state dict of tensors,
    loaded with weights_only=True so a pickled object never runs)."""
    import sys
    import types

    class Tensor:
        def __init__(self, a):
            self.a, self.dtype = a, a.dtype

        def detach(self):
            return self

        def numpy(self):
            return self.a

    saved = {"a.pt": {"w": Tensor(np.ones(8, dtype=np.float32)), "note": "not a tensor"},
             "b.pt": {"w": Tensor(np.array([1] * 7 + [2], dtype=np.float32))}}

    def load(path, map_location=None, weights_only=False):
        assert weights_only is True and map_location == "cpu"
        return saved[path.name]

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(
        load=load, Tensor=Tensor, bfloat16="bf16"))
    (tmp_path / "a.pt").write_bytes(b"x")
    (tmp_path / "b.pt").write_bytes(b"y")
    d = explain("ckpt.pt", tmp_path / "a.pt", tmp_path / "b.pt")
    assert d["kind"] == "pt" and d["summary"] == "w: 1 of 8 values differ, max abs 1"


PEAK = """\
import sys
from pathlib import Path
from orchestrator.content import explain
d = explain(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0].split()[1]
print(int(hwm) >> 10, d["summary"])  # this process's peak (ru_maxrss survives the exec)
"""


def _peak_mib(name, a, b) -> tuple[int, str]:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", PEAK, name, str(a), str(b)], capture_output=True,
                       text=True, timeout=300, check=True)
    mib, summary = p.stdout.split(" ", 1)
    return int(mib), summary.strip()


@pytest.mark.process
def test_what_comparing_hostile_outputs_costs_is_bounded(tmp_path):
    """Issue 21, M3: a 1 MB .npz made `repro verify` use 3.2 GB and a 190 KB PNG 3.8 GB.
    Decompression is capped before it starts, and what differs is computed a band or a
    chunk at a time, so the largest allowed pair costs their decoded size and little more."""
    from PIL import Image

    big = (1 << 26) - 1024  # float32 values: just under the 256 MiB limit, ~250 KB compressed
    np.savez_compressed(tmp_path / "a.npz", w=np.zeros(big, np.float32))
    np.savez_compressed(tmp_path / "b.npz", w=np.ones(big, np.float32))
    assert (tmp_path / "a.npz").stat().st_size < 1 << 20
    mib, summary = _peak_mib("w.npz", tmp_path / "a.npz", tmp_path / "b.npz")
    assert summary == "w: all values differ, max abs 1" and mib < 1000, (mib, summary)

    for name, colour in (("a.png", (0, 0, 0, 0)), ("b.png", (255, 255, 255, 255))):
        Image.new("RGBA", (4000, 4000), colour).save(tmp_path / name)  # 16 M pixels, ~60 KB
    mib, summary = _peak_mib("x.png", tmp_path / "a.png", tmp_path / "b.png")
    assert summary.startswith("16000000 of 16000000 pixels differ") and mib < 400, (mib, summary)
    Image.new("L", (5000, 5000)).save(tmp_path / "bomb.png")  # over the pixel cap: not decoded
    mib, summary = _peak_mib("x.png", tmp_path / "bomb.png", tmp_path / "bomb.png")
    assert "not compared by content (over 16,000,000 pixels)" in summary and mib < 200


@pytest.mark.process
def test_a_diffoscope_that_runs_out_of_time_is_killed_and_leaves_nothing(tmp_path,
                                                                       monkeypatch):
    """Issue 21, M3: a killed diffoscope left gigabytes in the temp folder. Its temp folder
    is its own and is removed; its process group is killed; a folder of a repro that was
    itself killed is removed by `repro gc` (diffoscope.sweep_temp)."""
    import os
    import tarfile
    import tempfile

    from orchestrator import diffoscope

    for name in ("a", "b"):
        (tmp_path / "f.txt").write_bytes(name.encode() * 1000)
        with tarfile.open(tmp_path / f"{name}.tar", "w") as t:
            t.add(tmp_path / "f.txt", arcname="f.txt")
    monkeypatch.setattr(diffoscope, "DIFFOSCOPE_TIMEOUT_S", 0.05)
    d = explain("x.tar", tmp_path / "a.tar", tmp_path / "b.tar")
    assert d["summary"] == "not compared by content (diffoscope took over 0.05 s)"
    base = Path(tempfile.gettempdir())
    assert not list(base.glob(f"{diffoscope.TEMP_PREFIX}{os.getpid()}-*"))
    dead = base / f"{diffoscope.TEMP_PREFIX}999999999-x"  # a repro killed mid-diff
    (dead / "unpacked").mkdir(parents=True)
    live = Path(tempfile.mkdtemp(prefix=f"{diffoscope.TEMP_PREFIX}{os.getpid()}-"))
    try:
        assert str(dead) in diffoscope.sweep_temp() and not dead.exists() and live.exists()
    finally:
        live.rmdir()


def test_one_reader_table_serves_explanations_and_places(tmp_path):
    """Verdicts (``explain``) and `repro diagnose` (``places``) read a format the same way:
    a format one of them knows, the other knows too, from ``READERS``."""
    from orchestrator import content

    assert set(content.READERS) == {*content.ARRAYS, "json", "png", *content.TEXT}
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text('{"loss": 0.5, "step": 3}\n')
    b.write_text('{"loss": 0.25, "step": 3}\n')
    for name in ("m.json", "m.JSON"):
        assert content.places(name, a, b) == frozenset({".loss"})
        assert "loss" in content.explain(name, a, b)["summary"]
    assert content.places("m.png", a, b) is None  # by pixel count only: a whole file
    assert content.places("m.bin", a, b) is None
    assert content.explain("m.bin", a, b, diffoscope=False) is None
