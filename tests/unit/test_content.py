"""Content-aware differences: one ULP of noise told apart from different weights, the
first differing JSON path and text line, and hostile files that never break a verdict."""

from __future__ import annotations

import json

import numpy as np

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


def test_json_text_and_csv_name_the_first_difference(tmp_path):
    a, b = _pair(tmp_path, "m.json", json.dumps({"acc": 0.91, "cfg": {"lr": 0.1}}),
                 json.dumps({"acc": 0.93, "cfg": {"lr": 0.1}}))
    d = explain("m.json", a, b)
    assert d["first_path"] == ".acc" and abs(d["max_abs"] - 0.02) < 1e-12
    a, b = _pair(tmp_path, "s.csv", "x,y\n1,2\n3,4\n", "x,y\n1,2\n3,5\n")
    d = explain("s.csv", a, b)
    assert d["first_line"] == 3 and d["original"] == "3,4" and d["replay"] == "3,5"
    assert explain("model.bin", a, b) is None  # not a format compared by content


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
    verdict = {"outputs": {"differ": [{"path": "s.txt", "original": {"sha256": "a"},
                                       "replay": {"sha256": "b"}}]}}
    annotate(verdict, {"a": a, "b": b}.__getitem__)
    assert verdict["outputs"]["differ"][0]["content"]["summary"] == \
        "1 of 2 lines differ, first at line 2"
