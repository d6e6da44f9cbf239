"""Checks of the GPU paths on a machine with an NVIDIA GPU (no Docker needed there), each
run in a fresh Python process:

- NVML inventory and selection as the executor does them, for whatever GPU is here (its
  model read from NVML, never assumed), and the options a container would get;
- a small bf16 CNN with adaptive pooling (its backward has no deterministic CUDA kernel),
  unseeded, under repro's zero-touch strict path (sitecustomize) and under the explicit
  helper ``repro.seed_everything()``: each must run (warn-only, not raise), record the op's
  warning, and give the same weights three times;
- a negative control: an op that is nondeterministic on current PyTorch (a float32
  ``scatter_add_`` with many collisions: CUDA atomics add in a varying order) run three
  times with determinism off must give differing results, so the check can tell at all.

    python scripts/gpu-check.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "orchestrator" / "runtime"
sys.path.insert(0, str(ROOT))


def cnn(helper: bool) -> dict:
    """One training run of a small CNN, unseeded unless ``helper`` (seed_everything)."""
    import torch

    if helper:
        import repro  # the helper jobs import inside repro's containers

        repro.seed_everything(1234)
    dev = torch.device("cuda")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d((5, 5)), torch.nn.Flatten(), torch.nn.Linear(800, 10),
    ).to(dev, dtype=torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator(device="cpu").manual_seed(7)  # the data: the same every run
    x = torch.randn(256, 3, 23, 23, generator=g).to(dev, dtype=torch.bfloat16)
    y = torch.randint(0, 10, (256,), generator=g).to(dev)
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return {"sha256": h.hexdigest(), "loss": float(loss)}


def scatter(deterministic: bool) -> dict:
    """The negative control: many float32 values added into few bins by scatter_add_."""
    import torch

    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    dev = torch.device("cuda")
    g = torch.Generator(device="cpu").manual_seed(0)
    src = (torch.randn(1 << 22, generator=g) * torch.logspace(-4, 4, 1 << 22)).to(dev)
    idx = torch.randint(0, 64, (1 << 22,), generator=g).to(dev)
    out = torch.zeros(64, device=dev).scatter_add_(0, idx, src)
    torch.cuda.synchronize()
    return {"sha256": hashlib.sha256(out.cpu().numpy().tobytes()).hexdigest()}


def child(kind: str, out: Path) -> dict:
    """Run one check in a fresh process, as repro's container would run the job."""
    meta = Path(tempfile.mkdtemp(prefix="meta-", dir=out))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REPRO_") and k != "CUBLAS_WORKSPACE_CONFIG"}
    env.update(PYTHONPATH=str(RUNTIME), REPRO_META_DIR=str(meta), PYTHONHASHSEED="0",
               OMP_NUM_THREADS="1")
    if kind == "zero-touch":  # as repro's resolver sets it under determinism: strict
        env.update(REPRO_DETERMINISM="strict", REPRO_SEED="1234",
                   CUBLAS_WORKSPACE_CONFIG=":4096:8")
    elif kind == "helper":  # the helper alone must set what it needs
        env.update(REPRO_DETERMINISM="strict")
    cmd = [sys.executable] + (["-S"] if kind == "helper" else []) + [__file__, "--child",
                                                                      kind]
    if kind == "helper":  # -S keeps sitecustomize out: the helper alone
        env["PYTHONPATH"] = os.pathsep.join([str(RUNTIME), *_site_paths()])
    began = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    doc = {"kind": kind, "exit": p.returncode, "seconds": round(time.monotonic() - began, 1),
           "stderr_tail": p.stderr[-1500:]}
    if p.returncode == 0:
        doc.update(json.loads(p.stdout.strip().splitlines()[-1]))
    seeded = meta / "seeded.jsonl"
    doc["recorded"] = [json.loads(x) for x in seeded.read_text().splitlines()] \
        if seeded.exists() else []
    return doc


def _site_paths() -> list[str]:
    import site

    return [*site.getsitepackages(), site.getusersitepackages()]


def run_child(kind: str) -> None:
    import torch

    if kind == "off":
        torch.use_deterministic_algorithms(False)
    doc = scatter(kind == "scatter-strict") if kind.startswith("scatter") else \
        cnn(helper=kind == "helper")
    sys.stdout.write(json.dumps(doc) + "\n")


def nvml_checks() -> dict:
    doc: dict = {}
    try:
        from orchestrator import gpu
        from orchestrator.errors import GPUUnavailable
    except ImportError as e:
        return {"nvml_error": f"orchestrator not importable here: {e}"}
    inventory, why = gpu.inventory()
    doc["inventory"] = [g.as_dict() for g in inventory]
    doc["why_none"] = why
    if not inventory:
        return doc
    model = inventory[0].name  # whatever GPU this machine has, as NVML names it
    doc["model"] = model
    doc["select_model"] = [g.uuid for g in gpu.select({"count": 1, "model": model},
                                                      inventory, why)]
    doc["select_any"] = [g.uuid for g in gpu.select({"count": 1}, inventory, why)]
    try:
        gpu.select({"count": len(inventory) + 1}, inventory, why)
        doc["too_many"] = "selected?!"
    except GPUUnavailable as e:
        doc["too_many"] = str(e)
    try:
        from orchestrator.engine.docker import gpu_options

        doc["docker_options"] = gpu_options(doc["select_model"], podman=False)
        doc["podman_options"] = gpu_options(doc["select_model"], podman=True)
    except ImportError as e:  # the docker SDK is not needed for the rest
        doc["options_error"] = str(e)
    return doc


def verdicts(doc: dict) -> dict:
    """What the runs show: each check passed or not, and why."""
    def same(kind: str) -> bool:
        runs = doc["runs"][kind]
        return all(r["exit"] == 0 for r in runs) and len({r.get("sha256") for r in runs}) == 1

    def warned(kind: str) -> list[str]:
        return sorted({w["warning"].split(" ")[0] for r in doc["runs"][kind]
                       for w in r["recorded"] if "warning" in w})

    scatter_off = {r.get("sha256") for r in doc["runs"]["scatter-off"] if r["exit"] == 0}
    return {
        "zero_touch_identical": same("zero-touch"), "zero_touch_warned": warned("zero-touch"),
        "helper_identical": same("helper"), "helper_warned": warned("helper"),
        "helper_ran": all(r["exit"] == 0 for r in doc["runs"]["helper"]),
        "negative_control_differs": len(scatter_off) > 1,
        "scatter_strict_identical": same("scatter-strict"),
        "off_distinct": len({r.get("sha256") for r in doc["runs"]["off"]}),
        "nvml_model_selected": bool(doc.get("nvml", {}).get("select_model")),
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc: dict = {"started": time.time()}
    try:
        import torch

        doc["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                        "device": torch.cuda.get_device_name(0)
                        if torch.cuda.is_available() else None}
    except ImportError as e:
        doc["torch"] = {"error": str(e)}
    doc["nvml"] = nvml_checks()
    if not (doc["torch"].get("device")):
        (out / "gpu-check.json").write_text(json.dumps(doc, indent=1))
        sys.exit(f"gpu-check: no CUDA device for torch here ({doc['torch']}); nothing run")
    doc["runs"] = {kind: [child(kind, out) for _ in range(3)]
                   for kind in ("zero-touch", "helper", "off", "scatter-off",
                                "scatter-strict")}
    doc["verdicts"] = verdicts(doc)
    doc["finished"] = time.time()
    (out / "gpu-check.json").write_text(json.dumps(doc, indent=1))
    sys.stdout.write(json.dumps({k: doc[k] for k in ("torch", "verdicts")}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        run_child(sys.argv[2])
    else:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-check-out"))
