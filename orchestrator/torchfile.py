"""The tensors of a PyTorch ``.pt`` file, read without torch (a checkpoint compared where the
verifier has no torch: a segment verify, ``content.py``).

A ``torch.save`` file is a zip: ``ARCHIVE/data.pkl``, a pickle of the saved object whose
tensors point at storages by key (pickle's persistent ids), and ``ARCHIVE/data/KEY``, each
storage's raw little-endian bytes. The pickle is a job's output, hostile input: it is read by
an unpickler that resolves only the few names a tensor file uses (``ALLOWED``; the same idea
as torch's ``weights_only``), so no other callable can run; the zip's directory is checked
first, and each storage must fit its file. Nested containers are flattened into dotted names
(``model.0.weight``, ``optimizer.state.0.momentum_buffer``); numbers become 0-d arrays.

Written by hand because torch itself is a 1 GB dependency the verifying machine may not have;
where torch is importable, ``content.load_arrays`` uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .archives import check_zip

MAX_ARRAYS = 200
DTYPES = {"DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
          "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
          "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
          "BoolStorage": "?"}


class _Storage:
    def __init__(self, kind: str, key: str) -> None:
        self.dtype, self.key = np.dtype(DTYPES[kind]), key


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_rest: Any) -> Any:
    return ("tensor", storage, int(offset), tuple(int(n) for n in size),
            tuple(int(n) for n in stride))


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


def _ordered_dict(*args: Any) -> Any:
    return OrderedDict(*args)


ALLOWED = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
           ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
           ("collections", "OrderedDict"): _ordered_dict}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module == "torch" and name in DTYPES:
            return name  # a storage type, used only in persistent ids
        raise pickle.UnpicklingError(f"{module}.{name} is not something a tensor file holds")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"
                and pid[1] in DTYPES and isinstance(pid[2], str)):
            raise pickle.UnpicklingError("a persistent id that is not a storage")
        return _Storage(pid[1], pid[2])


def load(path: Path, limit: int) -> dict[str, Any]:
    """The arrays of a ``torch.save`` file by dotted name (at most ``MAX_ARRAYS``)."""
    check_zip(path, path.name, limit)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if pkl is None:
            raise ValueError("not a torch.save zip (no data.pkl): legacy .pt files are not "
                             "read without torch")
        root = pkl[:-len("data.pkl")]
        obj = _Unpickler(io.BytesIO(z.read(pkl))).load()
        storages: dict[str, bytes] = {}

        def array(t: tuple) -> Any:
            _, storage, offset, size, stride = t
            if storage.key not in storages:
                storages[storage.key] = z.read(f"{root}data/{storage.key}")
            raw = np.frombuffer(storages[storage.key], dtype=storage.dtype)
            if not size:
                return raw[offset].copy() if offset < len(raw) else np.array([])
            reach = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
            if offset < 0 or any(s < 0 for s in stride) or reach > len(raw):
                raise ValueError("a tensor reaches past its storage")
            return np.lib.stride_tricks.as_strided(
                raw[offset:], shape=size,
                strides=tuple(s * raw.itemsize for s in stride)).copy()

        return flatten(obj, lambda v: array(v) if isinstance(v, tuple) and v
                       and v[0] == "tensor" else None)


def flatten(obj: Any, leaf: Any) -> dict[str, Any]:
    """A saved object's arrays by dotted name: ``leaf(value)`` gives a tensor's array (None
    for anything else); containers are walked, numbers kept as 0-d arrays."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if len(out) >= MAX_ARRAYS or depth > 32:
            return
        found = leaf(value)
        if found is not None:
            out[prefix] = found
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}" if prefix else str(i), v, depth + 1)
        elif isinstance(value, bool | int | float) and prefix:
            out[prefix] = np.array(value)

    walk("", obj, 0)
    return out
