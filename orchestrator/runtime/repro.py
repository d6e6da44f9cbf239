"""repro's in-container helper: ``import repro`` in a job run by repro (zero dependencies).

    import repro
    seed = repro.seed_everything()          # random, numpy, torch from the recorded seed
    repro.log_metric("loss", 0.31, step=3)  # a learning curve point, recorded with the run
    repro.output_dir() / "weights.npz"      # where outputs go (hashed and stored after exit)

Outside a repro container the same calls work: outputs go to ./outputs and metrics to
./outputs/.repro-metrics.jsonl, so a job can be developed without repro.
"""

import json
import math
import os
import random
from pathlib import Path

__all__ = ["input_path", "log_metric", "log_param", "output_dir", "params", "run_info",
           "seed_everything"]

_ROOT = Path("/repro")
_INSIDE = (_ROOT / "run.json").exists()


def run_info():
    """The run's id, name, params, seed and inputs as repro recorded them."""
    if _INSIDE:
        return json.loads((_ROOT / "run.json").read_text())
    return {"id": None, "params": {}, "seed": int(os.environ.get("REPRO_SEED", "0")),
            "inputs": {}}


def params():
    return dict(run_info().get("params", {}))


def output_dir():
    path = _ROOT / "outputs" if _INSIDE else Path("outputs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def input_path(name):
    if _INSIDE:
        return _ROOT / "inputs" / name
    return Path(run_info()["inputs"].get(name, name))


def seed_everything(seed=None):
    """Seed random, numpy and torch (when importable) from the recorded seed.

    Under strict determinism (repro's default) torch is also switched to deterministic
    algorithms with cuDNN benchmarking off, as repro's zero-touch seeding does it: warn-only,
    so an op without a deterministic kernel warns (recorded with the run) instead of
    raising. Without that, GPU runs differ bit-wise.
    """
    if seed is None:
        seed = int(os.environ.get("REPRO_SEED", run_info().get("seed", 0)))
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        return seed
    torch.manual_seed(seed)
    if os.environ.get("REPRO_DETERMINISM", "strict") == "strict":
        from _repro_torch import make_deterministic  # beside this file, on the job's path

        make_deterministic(torch)
    return seed


def log_metric(name, value, step=None):
    """Record one point of a metric. The last value of each name becomes the run's metric
    (unless metrics.json says otherwise); all points form its curve."""
    value = float(value)
    if not math.isfinite(value):
        value = None
    meta = _ROOT / "meta" if _INSIDE else output_dir()
    line = json.dumps({"name": str(name), "value": value, "step": step})
    with open(meta / ("metrics.jsonl" if _INSIDE else ".repro-metrics.jsonl"), "a") as f:
        f.write(line + "\n")


def log_param(name, value):
    """Record a parameter the job decided itself (e.g. the train-set size). Params declared in
    the spec win over logged ones of the same name."""
    if not isinstance(value, (bool, int, float, str)):
        value = str(value)
    meta = _ROOT / "meta" if _INSIDE else output_dir()
    with open(meta / ("params.jsonl" if _INSIDE else ".repro-params.jsonl"), "a") as f:
        f.write(json.dumps({"name": str(name), "value": value}) + "\n")
