#!/bin/bash
# Issue 25 on a machine with an NVIDIA GPU (no Docker there): the checks a prefix and a
# segment verify make, on examples/resumable/train_torch.py run as repro's container runs it
# (repro's sitecustomize on PYTHONPATH, the determinism environment), with determinism strict
# and off. For each mode: two full runs of 600 steps (do their loss series agree through step
# 100, a prefix, and in full?), then a run resumed from the first run's checkpoint of step 300
# (is its checkpoint of step 400 the first run's, byte for byte: a segment?).
#
#   bash scripts/gpu-partial.sh OUT_DIR
set -u
out=${1:?usage: gpu-partial.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out" /repro/meta || { echo "cannot create /repro (need root)"; exit 1; }
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$out/torch.txt"

run() {  # NAME MODE [ARGS...]
  name=$1 mode=$2; shift 2
  mkdir -p "$out/$name"
  (cd "$out/$name" && env PYTHONPATH="$here/orchestrator/runtime" REPRO_DETERMINISM="$mode" \
     REPRO_SEED=0 PYTHONHASHSEED=0 CUBLAS_WORKSPACE_CONFIG=:4096:8 OMP_NUM_THREADS=1 \
     python3 "$here/examples/resumable/train_torch.py" --steps 600 --every 100 "$@") \
     > "$out/$name.log" 2>&1
  echo "exit $?" >> "$out/$name.log"
}
for mode in strict off; do
  run "$mode-a" "$mode"
  run "$mode-b" "$mode"
  run "$mode-resumed" "$mode" --resume "$out/$mode-a/checkpoints/step_300.pt"
  prefix=$(diff -q <(grep -E '^step ([0-9]|[1-9][0-9]|100) ' "$out/$mode-a.log") \
                   <(grep -E '^step ([0-9]|[1-9][0-9]|100) ' "$out/$mode-b.log") >/dev/null \
           && echo identical || echo differs)
  full=$(cmp -s "$out/$mode-a/checkpoints/step_600.pt" "$out/$mode-b/checkpoints/step_600.pt" \
         && echo identical || echo differs)
  segment=$(cmp -s "$out/$mode-a/checkpoints/step_400.pt" \
                   "$out/$mode-resumed/checkpoints/step_400.pt" && echo identical || echo differs)
  printf '%s: prefix through 100 %s; full run %s; segment 300-400 %s\n' \
    "$mode" "$prefix" "$full" "$segment" | tee -a "$out/summary.txt"
done
