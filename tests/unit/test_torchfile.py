"""PyTorch checkpoints read without torch: every tensor of a nested checkpoint by its dotted
name, and a hostile pickle refused before it can run anything. The two files in tests/data
were written by torch 1.13 (Debian's, in the python-torch image): the same checkpoint, one
weight nudged by 1e-6 in the second."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from orchestrator import torchfile
from orchestrator.content import explain

DATA = Path(__file__).resolve().parents[1] / "data"


def test_a_nested_checkpoint_is_read_tensor_by_tensor():
    a = torchfile.load(DATA / "checkpoint_a.pt", 1 << 20)
    assert {"model.0.weight", "model.2.bias", "optimizer.state.0.momentum_buffer",
            "optimizer.param_groups.0.lr", "step", "batches", "half", "bf"} <= set(a)
    assert a["model.0.weight"].shape == (4, 3) and a["model.0.weight"].dtype == np.float32
    assert int(a["step"]) == 300 and a["batches"].dtype == np.uint8
    half = a["half"]  # saved transposed: strides honoured
    assert half.shape == (3, 2) and half.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert a["bf"].tolist() == [0x3F80, 0x3F80]  # bfloat16 1.0, as its bits


def test_the_tensor_that_differs_is_named():
    a = torchfile.load(DATA / "checkpoint_a.pt", 1 << 20)
    b = torchfile.load(DATA / "checkpoint_b.pt", 1 << 20)
    assert [k for k in a if not np.array_equal(a[k], b[k])] == ["model.0.weight"]
    said = explain("checkpoints/step_300.pt", DATA / "checkpoint_a.pt",
                   DATA / "checkpoint_b.pt", diffoscope=False)
    assert said is not None
    assert said["summary"].startswith("model.0.weight: 1 of 12 values differ, at most ")


def hostile(tmp_path: Path, payload: bytes, name: str = "evil.pt") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
    return path


def test_a_pickle_that_calls_anything_else_is_refused(tmp_path):
    marker = tmp_path / "ran"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    with pytest.raises(pickle.UnpicklingError, match="os.system is not something"):
        torchfile.load(hostile(tmp_path, payload), 1 << 20)
    assert not marker.exists()
    said = explain("evil.pt", hostile(tmp_path, payload), hostile(tmp_path, payload, "b.pt"),
                   diffoscope=False)
    assert not marker.exists() and said is not None  # a note, never an exception


def _u(text: str) -> bytes:  # pickle's BINUNICODE
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


def test_a_tensor_past_its_storage_is_refused(tmp_path):
    # {"w": torch._utils._rebuild_tensor_v2(<storage of 2 floats>, 0, (4,), (1,), False, None)}
    # written opcode by opcode (pickling the real call would need torch)
    storage = (b"(" + _u("storage") + b"ctorch\nFloatStorage\n" + _u("0") + _u("cpu")
               + b"K\x02tQ")
    payload = (b"\x80\x02}" + _u("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage
               + b"K\x00K\x04\x85K\x01\x85\x89NtRs.")
    path = tmp_path / "short.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/data/0", np.zeros(2, np.float32).tobytes())
    with pytest.raises(ValueError, match="reaches past its storage"):
        torchfile.load(path, 1 << 20)
    with zipfile.ZipFile(path, "w") as z:  # the same tensor over a storage that holds it
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/data/0", np.arange(4, dtype=np.float32).tobytes())
    assert torchfile.load(path, 1 << 20)["w"].tolist() == [0, 1, 2, 3]
