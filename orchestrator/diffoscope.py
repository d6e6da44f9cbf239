"""Outputs of any other format (archives, PDFs, images, ...) explained by diffoscope when it
is installed (Debian: diffoscope-minimal), for ``content.py``. diffoscope unpacks what a job
wrote, so it runs bounded: in time (its whole process group is killed), memory and the size
of each file it writes (``prlimit``), in a temp folder of its own that ``sweep_temp`` (run by
`repro gc`) removes when repro itself was killed meanwhile."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

DIFFOSCOPE_TIMEOUT_S = 30.0
DIFFOSCOPE_LINES = 12
DIFFOSCOPE_LIMIT = 64 << 20


def explain(a: Path, b: Path, kind: str) -> dict[str, Any] | None:
    """Any other format (archives, PDFs, images, ...), explained by diffoscope when it is
    installed (Debian: diffoscope-minimal): its text report's first lines. It unpacks what
    the job wrote, so it is bounded: in time (its whole process group is killed), memory
    (``RLIMIT_AS``), the size of each file it writes (``RLIMIT_FSIZE``), and it writes into
    a temp folder of its own, removed afterwards (and by `repro gc` when repro itself was
    killed meanwhile: ``sweep_temp``). None when it is not installed."""
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("diffoscope")
    if exe is None:
        return None
    if a.stat().st_size > DIFFOSCOPE_LIMIT or b.stat().st_size > DIFFOSCOPE_LIMIT:
        return {"kind": kind, "summary": "not compared by content (over "
                                         f"{DIFFOSCOPE_LIMIT >> 20} MiB)"}
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    try:
        p = subprocess.Popen([*_bounded(), exe, "--no-progress", "--text", "-",
                              "--max-text-report-size", "20000",
                              "--exclude-directory-metadata", "yes", str(a), str(b)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, "TMPDIR": tmp})
        try:
            stdout, stderr = p.communicate(timeout=DIFFOSCOPE_TIMEOUT_S)
        except BaseException:  # its time is up, or ours (Ctrl-C): it and all it started
            _kill_group(p)
            raise
    except subprocess.TimeoutExpired:
        return {"kind": kind, "summary": "not compared by content (diffoscope took over "
                                         f"{DIFFOSCOPE_TIMEOUT_S:g} s)"}
    except OSError as e:
        return {"kind": kind, "summary": f"not compared by content ({e})"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [ln for ln in stdout[:1 << 20].decode("utf-8", "replace").splitlines()
             if ln.strip() and not ln.startswith(("--- ", "+++ "))][:DIFFOSCOPE_LINES]
    if p.returncode not in (0, 1) or not lines:
        why = stderr.decode("utf-8", "replace").strip().splitlines()
        return {"kind": kind, "summary": "not compared by content (diffoscope: "
                f"{(why[-1] if why else '')[:120] or 'no report'})"}
    changed = [re.sub(r"^[│├└─\s]+", "", ln) for ln in lines
               if ln.lstrip("│ ").startswith(("├── ", "└── "))]
    summary = "diffoscope: " + ("; ".join(changed[:3]) if changed else lines[0].strip()[:200])
    return {"kind": kind, "tool": "diffoscope", "report": lines, "summary": summary[:300]}


TEMP_PREFIX = "repro-diffoscope-"
DIFFOSCOPE_MEMORY = 2 << 30  # bytes of address space diffoscope (and each tool it runs) may use
DIFFOSCOPE_FILE = 256 << 20  # bytes of any one file it writes while unpacking


def _bounded() -> list[str]:
    """util-linux's prlimit in front of diffoscope: its limits, inherited by every tool it
    runs (not a preexec_fn: repro has threads by then, where that can deadlock)."""
    import shutil

    exe = shutil.which("prlimit")
    if exe is None:
        raise OSError("prlimit (util-linux) is not installed: diffoscope would be unbounded")
    return [exe, f"--as={DIFFOSCOPE_MEMORY}", f"--fsize={DIFFOSCOPE_FILE}", "--"]


def _kill_group(p: Any) -> None:
    import signal

    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    p.wait()


def sweep_temp() -> list[str]:
    """Remove the temp folders of diffoscope runs whose repro process is gone (killed while
    diffoscope unpacked what a job wrote); returns what was removed."""
    import shutil
    import tempfile

    removed = []
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{TEMP_PREFIX}*"):
        pid = folder.name[len(TEMP_PREFIX):].split("-", 1)[0]
        try:
            st = folder.lstat()
        except OSError:
            continue
        if not pid.isdigit() or st.st_uid != os.getuid() or Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed
