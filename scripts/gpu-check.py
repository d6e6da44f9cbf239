"""Checks of the GPU paths on a machine with an NVIDIA GPU (no Docker needed there):
NVML inventory and selection as the executor does them, the options a container would get
(Docker device requests, CDI names under podman), and a seeded CUDA training step with the
in-container helper's strict determinism, run twice: the weights' sha256 must agree.

    python scripts/gpu-check.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import gpu
from orchestrator.engine.docker import gpu_options
from orchestrator.errors import GPUUnavailable


def train(seed: int, deterministic: bool) -> str:
    """A seeded step with an atomic scatter-add (nondeterministic on GPU by default)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "orchestrator" / "runtime"))
    import repro  # the helper jobs import inside repro's containers

    os.environ["REPRO_DETERMINISM"] = "strict" if deterministic else "off"
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    repro.seed_everything(seed)
    if not deterministic:
        torch.use_deterministic_algorithms(False)
    dev = torch.device("cuda")
    w = torch.randn(4096, 256, device=dev, requires_grad=True)
    x = torch.randn(1 << 16, 256, device=dev)
    idx = torch.randint(0, 4096, (1 << 16,), device=dev)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(5):
        out = torch.zeros(4096, 256, device=dev).index_put((idx,), x * w[idx],
                                                           accumulate=True)
        loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return hashlib.sha256(w.detach().cpu().numpy().tobytes()).hexdigest()


def main(out: Path) -> None:
    doc: dict = {"started": time.time()}
    inventory, why = gpu.inventory()
    doc["inventory"] = [g.as_dict() for g in inventory]
    doc["why_none"] = why
    doc["select_h100"] = [g.uuid for g in gpu.select({"count": 1, "model": "h100"}, inventory,
                                                     why)]
    try:
        gpu.select({"count": len(inventory) + 1}, inventory, why)
        doc["too_many"] = "selected?!"
    except GPUUnavailable as e:
        doc["too_many"] = str(e)
    uuids = doc["select_h100"]
    doc["docker_options"] = gpu_options(uuids, podman=False)
    doc["podman_options"] = gpu_options(uuids, podman=True)
    try:
        doc["strict"] = [train(1234, True) for _ in range(3)]
        doc["default"] = [train(1234, False) for _ in range(3)]
    except Exception as e:  # report, do not hide
        doc["training_error"] = f"{type(e).__name__}: {e}"
    doc["finished"] = time.time()
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-check.json").write_text(json.dumps(doc, indent=1))
    sys.stdout.write(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-check-out"))
