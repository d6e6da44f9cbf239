"""What the benchmark scripts share: one command, timed, its failure shown."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> float:
    """Seconds ``cmd`` took; a failure raises with the end of its stderr."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
    return took
