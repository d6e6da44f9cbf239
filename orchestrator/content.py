"""What differs inside two versions of an output, and by how much: the difference between
one ULP of noise in a weight and different weights.

For arrays, ``.npy``/``.npz`` (numpy), ``.safetensors`` (read with numpy) and ``.pt`` (torch, or
``torchfile`` without it): shape and dtype, how many elements differ, the first differing index,
the largest absolute and relative difference, and for floats the largest distance in ULPs
(units in the last place). For JSON: the first differing path and the largest numeric
difference. For text (``.txt``, ``.csv``, ``.log``, ...): the first differing line and how
many differ. For PNG (Pillow): how many pixels differ. Any other format goes to diffoscope
when it is installed (archives, PDFs, ...: it knows nothing of ULPs, so arrays stay ours).
Each comes with a one-line ``summary`` for the verdict.

Files a job wrote are hostile: numpy loads with ``allow_pickle=False``, torch with
``weights_only=True``; a safetensors header is bounded and its offsets checked; files over
``LIMIT`` bytes are not opened (``DIFFOSCOPE_LIMIT`` for diffoscope, which also gets a time
limit); any failure is a note in the result, never an exception out of a verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diffoscope import explain as diffoscope_explain

if TYPE_CHECKING:
    from .record import Verdict

LIMIT = 256 << 20  # bytes of each version read at most
TEXT = {"txt", "csv", "tsv", "log", "md", "yaml", "yml", "out"}


def _kind(name: str) -> str:
    """An output's format, by its extension (lower case; "" without one)."""
    return name.lower().rsplit(".", 1)[-1] if "." in name else ""


@dataclass(frozen=True)
class Reader:
    """How one format is compared: ``explain`` says how two versions differ (with a
    one-line summary), ``places`` where (None: the format is compared as a whole). One
    table (``READERS``) serves verdicts and `repro diagnose` alike."""

    explain: Callable[[Path, Path, str], dict[str, Any]]
    places: Callable[[Path, Path, str], frozenset[str] | None] | None = None


def explain(name: str, a: Path, b: Path, diffoscope: bool = True) -> dict[str, Any] | None:
    """How ``a`` (the original) and ``b`` (the replay) of output ``name`` differ, or None
    when the format is not one compared by content (and ``diffoscope`` is off or absent)."""
    kind = _kind(name)
    reader = READERS.get(kind)
    if reader is None:
        return diffoscope_explain(a, b, kind) if diffoscope else None
    if a.stat().st_size > LIMIT or b.stat().st_size > LIMIT:
        return {"kind": kind, "summary": f"not compared by content (over {LIMIT >> 20} MiB)"}
    try:
        return reader.explain(a, b, kind)
    except ImportError as e:
        return {"kind": kind, "summary": f"not compared by content ({e.name or 'a library'} "
                                         "is not installed)"}
    except Exception as e:  # a malformed file is a finding, not a crash
        return {"kind": kind, "summary": f"not compared by content ({type(e).__name__}: "
                                         f"{str(e)[:120]})"}


def arrays(x: Any, y: Any) -> dict[str, Any]:
    """Two numpy arrays compared element by element, ``CHUNK`` elements at a time (what
    comparing costs stays a few hundred MiB however large the arrays, and however many of
    their values differ)."""
    import numpy as np

    if x.shape != y.shape or x.dtype != y.dtype:
        return {"shape": [list(x.shape), list(y.shape)], "dtype": [str(x.dtype), str(y.dtype)],
                "summary": f"shape/dtype changed: {x.dtype}{list(x.shape)} -> "
                           f"{y.dtype}{list(y.shape)}"}
    n = int(x.size)
    floating = np.issubdtype(x.dtype, np.floating)
    numeric = floating or np.issubdtype(x.dtype, np.integer)
    xs, ys = x.reshape(-1), y.reshape(-1)
    count, first = 0, -1
    abs_max, rel_max, ulps = [], [], []
    for start in range(0, n, CHUNK):
        a, b = xs[start:start + CHUNK], ys[start:start + CHUNK]
        differ = differing(a, b)
        found = int(differ.sum())
        if not found:
            continue
        if first < 0:
            first = start + int(np.argmax(differ))
        count += found
        if numeric:
            xa, ya = a[differ].astype(np.float64), b[differ].astype(np.float64)
            absd = np.abs(xa - ya)
            scale = np.maximum(np.abs(xa), np.abs(ya))
            abs_max.append(np.nanmax(absd))
            rel_max.append(np.nanmax(np.where(scale > 0, absd / np.where(scale > 0, scale, 1),
                                              0.0)))
            del xa, ya, absd, scale
        if floating:
            ulps.append(_max_ulp(a[differ], b[differ]))
    out: dict[str, Any] = {"shape": list(x.shape), "dtype": str(x.dtype), "elements": n,
                           "differing": count, "fraction": count / n if n else 0.0}
    if not count:
        out["summary"] = f"all {n} values equal (the bytes differ elsewhere: header or order)"
        return out
    out["first_index"] = [int(i) for i in np.unravel_index(first, x.shape)]
    if numeric:
        out["max_abs"] = float(np.nanmax(abs_max))
        out["max_rel"] = float(np.nanmax(rel_max))
    if floating:
        out["max_ulp"] = max(ulps)
    share = "all" if count == n else f"{count} of {n}"
    if floating and out["max_ulp"] <= 1024:
        out["summary"] = f"{share} values differ, at most {out['max_ulp']} ULP"
    elif "max_abs" in out:
        out["summary"] = f"{share} values differ, max abs {out['max_abs']:.3g}"
    else:
        out["summary"] = f"{share} values differ"
    return out


CHUNK = 1 << 22  # elements of each array compared at a time


def differing(x: Any, y: Any) -> Any:
    """The elements of two same-shaped arrays that differ (NaN and NaN are the same)."""
    import numpy as np

    differ = x != y
    if np.issubdtype(x.dtype, np.floating):
        differ &= ~(np.isnan(x) & np.isnan(y))
    return differ


def _max_ulp(x: Any, y: Any) -> int:
    """The largest distance in units in the last place between paired floats: their bit
    patterns as integers ordered like the floats, subtracted (exact up to 2**53)."""
    import numpy as np

    ints: Any = {2: np.int16, 4: np.int32, 8: np.int64}[x.dtype.itemsize]
    lowest = -(2 ** (8 * x.dtype.itemsize - 1))

    def ordered(v: Any) -> Any:
        i = v.view(ints).astype(np.float64)
        return np.where(i < 0, float(lowest) - i, i)

    if x.size == 0:
        return 0
    return int(np.nanmax(np.abs(ordered(x) - ordered(y))))


ARRAYS = ("npy", "npz", "safetensors", "pt", "pth")
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                      "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2",
                      "U8": "u1", "BOOL": "?", "BF16": "<u2"}  # bfloat16: its raw bits
HEADER_LIMIT = 100 << 20  # bytes of a safetensors header read at most


def load_arrays(kind: str, path: Path) -> dict[str, Any]:
    """An array file's arrays by name ("" for a lone .npy): numpy with allow_pickle=False;
    safetensors read by hand (its format is a length, a JSON header and raw bytes, and
    numpy suffices: no library needed); .pt with torch.load(weights_only=True) when torch
    is importable, else ``torchfile`` (a restricted unpickler); a checkpoint's nested
    state is flattened to dotted names (``model.0.weight``)."""
    import numpy as np

    if kind == "npy":
        return {"": np.load(path, allow_pickle=False)}
    if kind == "npz":  # a zip: its directory checked before numpy decompresses anything
        from .archives import check_zip

        check_zip(path, path.name, LIMIT)
        with np.load(path, allow_pickle=False) as z:
            return {n: z[n] for n in sorted(z.files)[:200]}
    if kind == "safetensors":
        return _safetensors(path)
    from . import torchfile

    try:
        import torch
    except ImportError:  # read by hand: a verifier need not have torch
        return torchfile.load(path, LIMIT)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an older torch's weights_only refuses an optimizer's floats
        return torchfile.load(path, LIMIT)
    return torchfile.flatten(loaded, lambda v: (
        v.detach().view(torch.int16).numpy().view("<u2") if v.dtype == torch.bfloat16
        else v.detach().numpy()) if isinstance(v, torch.Tensor) else None)


def _safetensors(path: Path) -> dict[str, Any]:
    import numpy as np

    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size <= HEADER_LIMIT:
            raise ValueError(f"header length {size} is not plausible")
        header = json.loads(f.read(size))
        data = f.read()
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    out = {}
    for name, meta in sorted(header.items())[:200]:
        if name == "__metadata__":
            continue
        dtype = np.dtype(SAFETENSORS_DTYPES[meta["dtype"]])
        begin, end = (int(x) for x in meta["data_offsets"])
        shape = tuple(int(n) for n in meta["shape"])
        if any(n < 0 for n in shape) or not 0 <= begin <= end <= len(data) or \
                end - begin != dtype.itemsize * math.prod(shape):
            raise ValueError(f"{name}: its data offsets do not fit the file")
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
    return out


def _members(kind: str, xs: dict[str, Any], ys: dict[str, Any]) -> dict[str, Any]:
    if set(xs) == set(ys) == {""}:
        return {"kind": kind, **arrays(xs[""], ys[""])}
    per = {}
    for n in sorted(set(xs) | set(ys)):
        if n not in xs or n not in ys:
            per[n] = {"summary": "only in the " + ("replay" if n in ys else "original")}
        else:
            per[n] = arrays(xs[n], ys[n])
    changed = {n: d for n, d in per.items() if d.get("differing", 1)}
    summary = "; ".join(f"{n}: {d['summary']}" for n, d in list(changed.items())[:3])
    more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
    return {"kind": kind, "arrays": per,
            "summary": (summary + more) if changed else "every array equal"}


def _png(a: Path, b: Path) -> dict[str, Any]:
    """Pixels that differ, with Pillow: the size is read from the headers and checked before
    a pixel is decoded (a small file can hold a huge image), then compared in bands of
    rows, so the memory it takes is the two decoded images and little more."""
    import numpy as np
    from PIL import Image

    with Image.open(a) as ia, Image.open(b) as ib:  # headers only, so far
        if ia.size[0] * ia.size[1] > PNG_PIXELS or ib.size[0] * ib.size[1] > PNG_PIXELS:
            return {"kind": "png", "summary": f"not compared by content (over {PNG_PIXELS:,} "
                                              "pixels)"}
        if ia.size != ib.size or ia.mode != ib.mode:
            return {"kind": "png", "size": [list(ia.size), list(ib.size)],
                    "summary": f"image changed: {ia.mode} {ia.size[0]}x{ia.size[1]} -> "
                               f"{ib.mode} {ib.size[0]}x{ib.size[1]}"}
        x, y = np.asarray(ia), np.asarray(ib)
    height, width = x.shape[0], x.shape[1]
    band = max(1, (1 << 20) // max(1, width))  # about a million pixels at a time
    count, first, max_abs = 0, None, 0
    for top in range(0, height, band):
        xb, yb = x[top:top + band], y[top:top + band]
        differ = (xb != yb).reshape(xb.shape[0], width, -1).any(axis=2)
        found = int(differ.sum())
        if not found:
            continue
        if first is None:
            row, col = (int(i) for i in np.unravel_index(int(np.argmax(differ)), differ.shape))
            first = [col, top + row]
        count += found
        max_abs = max(max_abs, int(np.abs(xb.astype(np.int64) - yb.astype(np.int64)).max()))
    total = height * width
    out: dict[str, Any] = {"kind": "png", "pixels": total, "differing": count}
    if first is not None:
        out["first_pixel"], out["max_abs"] = first, max_abs
        out["summary"] = (f"{count} of {total} pixels differ, first at x={first[0]} "
                          f"y={first[1]}, max channel difference {max_abs}")
    else:
        out["summary"] = "the same pixels (metadata or compression differ)"
    return out


PNG_PIXELS = 16_000_000  # pixels of each image decoded at most (a small file can hold many)
DIFFOSCOPE_FILES = 3  # differing outputs of a verdict diffoscope is asked about, at most
def _json(a: Path, b: Path) -> dict[str, Any]:
    found, biggest = _json_paths(json.loads(a.read_text()), json.loads(b.read_text()))
    out: dict[str, Any] = {"kind": "json", "differing": len(found),
                           "first_path": found[0] if found else None}
    if biggest:
        out["max_abs"] = biggest
    out["summary"] = (f"{len(found)} value(s) differ, first at {found[0]}"
                      + (f", max abs {biggest:.3g}" if biggest else "")) if found else \
        "the same values (formatting differs)"
    return out


def _json_paths(x: Any, y: Any) -> tuple[list[str], float]:
    """The paths at which two JSON documents differ (at most about 1000), and the largest
    numeric difference among them."""
    found: list[str] = []
    biggest = [0.0]

    def walk(p: str, u: Any, v: Any, depth: int = 0) -> None:
        if depth > 64 or len(found) > 1000:
            return
        if isinstance(u, dict) and isinstance(v, dict):
            for k in sorted(set(u) | set(v)):
                walk(f"{p}.{k}", u.get(k), v.get(k), depth + 1)
        elif isinstance(u, list) and isinstance(v, list) and len(u) == len(v):
            for i, (s, t) in enumerate(zip(u, v, strict=True)):
                walk(f"{p}[{i}]", s, t, depth + 1)
        elif u != v:
            found.append(p or "$")
            if isinstance(u, int | float) and isinstance(v, int | float) and not \
                    isinstance(u, bool) and math.isfinite(u) and math.isfinite(v):
                biggest[0] = max(biggest[0], abs(float(u) - float(v)))

    walk("", x, y)
    return found, biggest[0]


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "replace").splitlines()


def _line_diffs(x: list[str], y: list[str]) -> list[int]:
    return [i for i in range(max(len(x), len(y)))
            if (x[i] if i < len(x) else None) != (y[i] if i < len(y) else None)]


def _text(a: Path, b: Path, kind: str) -> dict[str, Any]:
    x, y = _lines(a), _lines(b)
    differ = _line_diffs(x, y)
    out: dict[str, Any] = {"kind": kind, "lines": [len(x), len(y)], "differing": len(differ)}
    if differ:
        i = differ[0]
        out["first_line"] = i + 1
        out["original"] = (x[i] if i < len(x) else "")[:200]
        out["replay"] = (y[i] if i < len(y) else "")[:200]
        out["summary"] = (f"{len(differ)} of {max(len(x), len(y))} lines differ, first at "
                          f"line {i + 1}")
    else:
        out["summary"] = "the same lines (line endings or trailing bytes differ)"
    return out


PLACES_MAX = 100_000  # differing places listed by ``places`` before a file counts as one


def places(name: str, a: Path, b: Path) -> frozenset[str] | None:
    """Where inside output ``name`` two versions differ: line numbers of text, paths of
    JSON, element indices of arrays. `repro diagnose` tells by these which factor moves
    which part of a file (the clock stamps line 1, entropy lines 2-6). None when the file
    is not compared by place; it then differs as a whole."""
    kind = _kind(name)
    reader = READERS.get(kind)
    if reader is None or reader.places is None:
        return None
    if a.stat().st_size > LIMIT or b.stat().st_size > LIMIT:
        return None
    try:
        return reader.places(a, b, kind)
    except Exception:  # a hostile or unreadable file: compared as a whole
        return None


def _json_places(a: Path, b: Path, kind: str) -> frozenset[str] | None:
    found, _ = _json_paths(json.loads(a.read_text()), json.loads(b.read_text()))
    return frozenset(found) if len(found) <= 1000 else None


def _text_places(a: Path, b: Path, kind: str) -> frozenset[str] | None:
    return frozenset(f"line {i + 1}" for i in _line_diffs(_lines(a), _lines(b)))


def _array_places(a: Path, b: Path, kind: str) -> frozenset[str] | None:
    import numpy as np

    xs, ys = load_arrays(kind, a), load_arrays(kind, b)
    out: set[str] = set()
    for member in sorted(set(xs) | set(ys)):
        x, y = xs.get(member), ys.get(member)
        if x is None or y is None or x.shape != y.shape or x.dtype != y.dtype:
            out.add(f"{member}:shape")
            continue
        flat = np.flatnonzero(differing(x, y))
        if len(out) + flat.size > PLACES_MAX:
            return None
        out.update(f"{member}[{i}]" for i in flat.tolist())
    return frozenset(out)


def _array_explain(a: Path, b: Path, kind: str) -> dict[str, Any]:
    return _members(kind, load_arrays(kind, a), load_arrays(kind, b))


# every format compared by content: what explains a difference and what locates it
READERS: dict[str, Reader] = {
    **{kind: Reader(_array_explain, _array_places) for kind in ARRAYS},
    "json": Reader(lambda a, b, kind: _json(a, b), _json_places),
    "png": Reader(lambda a, b, kind: _png(a, b)),  # by pixel count; places: the whole file
    **{kind: Reader(_text, _text_places) for kind in TEXT},
}


def annotate(verdict: Verdict, local_path: Any) -> None:
    """Each differing output of a verdict gets its ``content`` (``local_path(sha256)``
    names an artifact's bytes on this machine). diffoscope explains the first
    ``DIFFOSCOPE_FILES`` of other formats: a verdict lands in the run's final write."""
    for i, d in enumerate(verdict.outputs.differ):
        try:
            found = explain(d.path, local_path(d.original.sha256),
                            local_path(d.replay.sha256), i < DIFFOSCOPE_FILES)
        except Exception as e:  # an artifact that cannot be read: the verdict still stands
            found = {"summary": f"not compared by content ({type(e).__name__})"}
        if found is not None:
            d.content = found
