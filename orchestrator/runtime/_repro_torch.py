"""torch's determinism switches, one set for both ways a job gets them: repro's zero-touch
``sitecustomize`` (``determinism: strict``, or `repro diagnose`'s GPU control) and the
explicit ``repro.seed_everything()``.

Deterministic algorithms in warn-only mode: an op without a deterministic kernel (on CUDA,
``adaptive_avg_pool2d_backward_cuda``, ``scatter_add_cuda_kernel``, ...) warns instead of
raising, so the job runs, and each such warning is written to /repro/meta/seeded.jsonl for
the record (`repro diagnose` names those ops when a GPU run differs). cuDNN benchmarking
off, its deterministic mode on, and cuBLAS's workspace fixed (``CUBLAS_WORKSPACE_CONFIG``,
read when CUDA starts: set here unless the job set it). Zero dependencies, Python 3.8+.
"""

import json
import os
import warnings

META_DIR = os.environ.get("REPRO_META_DIR", "/repro/meta")  # set only by repro's tests
META = os.path.join(META_DIR, "seeded.jsonl")
MAX_WARNINGS = 50

_state = {"hooked": False, "seen": set()}


def note(**item):
    try:
        with open(META, "a") as f:
            f.write(json.dumps(item) + "\n")
    except OSError:
        pass


def make_deterministic(torch):
    """Switch ``torch`` to deterministic algorithms (warn-only, warnings recorded)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    if _state["hooked"]:
        return
    _state["hooked"] = True
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        seen = _state["seen"]
        if "deterministic" in text and text not in seen and len(seen) < MAX_WARNINGS:
            seen.add(text)
            note(warning=text[:500])
        return shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    note(deterministic="torch")
