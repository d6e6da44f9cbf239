"""Units people write: sizes ('512m', '2GiB', a byte count) and durations ('90s', '10m').

Plain functions raising ValueError with the value in the message; callers add the field or
variable name (a spec field, a command-line option, a REPRO_* variable).
"""

from __future__ import annotations

import re
from typing import Any

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")


def parse_size(v: Any, what: str = "size") -> int:
    """'512m', '2g', '2GiB', '100', or a byte count -> bytes (binary units, like Docker)."""
    if isinstance(v, bool):
        raise ValueError(f"{what} must be like '2g' or '512m'")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"{what} must not be negative")
        return v
    m = _SIZE.match(str(v))
    if not m:
        raise ValueError(f"{what} {v!r} must be like '2g', '512m' or a byte count")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


def parse_duration(v: Any, what: str = "timeout") -> float:
    """90, 90.5, '90s', '10m', '2h', '1d' -> seconds (positive)."""
    if isinstance(v, bool):
        raise ValueError(f"{what} must be seconds or like '10m'")
    if isinstance(v, int | float):
        seconds = float(v)
    else:
        m = _DURATION.match(str(v))
        if not m:
            raise ValueError(f"{what} {v!r} must be seconds or like '90s', '10m', '2h'")
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{what} must be positive")
    return seconds


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
