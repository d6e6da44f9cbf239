#!/bin/bash
# Issue 26 on a machine with an NVIDIA GPU and no Docker: what a Charliecloud job is given.
# 1. The driver's files repro would bind (engine/driver.py: the CDI spec, else ldconfig),
#    each one present; 2. NVML's inventory and the selection by count (the UUIDs a job's
#    CUDA_VISIBLE_DEVICES names); 3. where ch-run is installed and an image folder is given
#    (IMAGE_DIR: a repro image unpacked by `REPRO_ENGINE=charliecloud repro ...`, with
#    python3 and torch), the job itself through CharliecloudEngine: nvidia-smi -L and torch's
#    view of the GPU inside. What could not be tried is said in OUT_DIR/summary.txt.
#
#   IMAGE_DIR=/path/to/root bash scripts/gpu-charliecloud.sh OUT_DIR
set -u
out=${1:?usage: gpu-charliecloud.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
export USER=${USER:-root}
PYTHONPATH="$here" python3 - "$out" <<'PY' 2>&1 | tee "$out/summary.txt"
import json, os, shutil, sys, tempfile
from pathlib import Path

out = Path(sys.argv[1])
from orchestrator import gpu
from orchestrator.engine.driver import driver_files

files, env = driver_files()
missing = [str(h) for h in files.values() if not h.exists()]
print(f"driver files: {len(files)} ({len(missing)} missing), extra env {env}")
(out / "driver.json").write_text(json.dumps({t: str(h) for t, h in files.items()}, indent=1))
inventory, why = gpu.inventory()
print("gpus:", [(g.name, g.uuid) for g in inventory] or why)
chosen = gpu.select({"count": 1}, inventory, why) if inventory else []
print("selected for count 1:", [g.uuid for g in chosen])
image = os.environ.get("IMAGE_DIR", "")
if not shutil.which("ch-run") or not image:
    print("NOT TRIED: a job under ch-run (needs ch-run on PATH and IMAGE_DIR)")
    sys.exit(0)
from orchestrator.engine import JobSpec, Volume
from orchestrator.engine.charliecloud import CharliecloudEngine

engine = CharliecloudEngine(cache=Path(tempfile.mkdtemp()))
hexid = "0" * 64
root = engine.images.root("sha256:" + hexid)
root.parent.mkdir(parents=True)
root.symlink_to(Path(image).resolve())
(root.parent / "image.json").write_text(json.dumps({"config": {"config": {"Env": [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}}))
work = Path(tempfile.mkdtemp())
os.chmod(work, 0o777)
job = JobSpec(run_id="gpucheck00000000", image="sha256:" + hexid, command=[
    "sh", "-c", "nvidia-smi -L; echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; python3 -c "
    "'import torch; print(torch.cuda.is_available(), torch.cuda.device_count(), "
    "torch.cuda.get_device_name(0))'"], gpus={"count": 1} if inventory else None,
    workdir="/repro/code",
    volumes=[Volume("code", work, "/repro/code", writable=True)], memory_bytes=16 << 30)
log = bytearray()
outcome = engine.run(job, lambda _: None, log.extend)
engine.cleanup(outcome.job_id)
print(log.decode(errors="replace"))
print("exit", outcome.code, "limits", outcome.host.get("limits"))
PY
