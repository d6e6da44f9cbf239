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


def hello_project(tmp: Path, root: Path) -> Path:
    """A throwaway project for launching specs/hello.yaml: a copy of specs/, examples/,
    images/ and data/ committed to a fresh git repository."""
    import shutil

    proj = tmp / "project"
    for name in ("specs", "examples", "images", "data"):
        shutil.copytree(root / name, proj / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(proj), "-c", "user.name=bench", "-c",
                        "user.email=bench@example.invalid", *args], check=True,
                       capture_output=True)
    return proj
