#!/bin/sh
# The PyTorch example, unmodified and unseeded, on a machine with an NVIDIA GPU (no Docker
# there): run as repro's container would run it (repro's sitecustomize on PYTHONPATH, the
# strict-determinism environment, /repro/meta for what it records), twice; then twice with
# determinism off. Identical weights and loss with it, differing without, on CUDA.
#
#   sh scripts/gpu-example.sh OUT_DIR
set -u
out=${1:?usage: gpu-example.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out" /repro/meta /repro/outputs || { echo "cannot create /repro (need root)"; exit 1; }
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$out/torch.txt"

run() {  # NAME MODE
  rm -f /repro/meta/seeded.jsonl /repro/outputs/weights.npy
  (cd /repro/outputs && env PYTHONPATH="$here/orchestrator/runtime" REPRO_DETERMINISM="$2" \
     REPRO_SEED=0 PYTHONHASHSEED=0 CUBLAS_WORKSPACE_CONFIG=:4096:8 OMP_NUM_THREADS=1 \
     python3 "$here/examples/torch-regression/train.py" --epochs 10 --samples 4096) \
     > "$out/$1.log" 2>&1
  echo "exit $?" >> "$out/$1.log"
  sha256sum /repro/outputs/weights.npy | cut -c1-64 > "$out/$1.sha"
  cp /repro/meta/seeded.jsonl "$out/$1.seeded.jsonl" 2>/dev/null || true
}
run strict1 strict
run strict2 strict
run off1 off
run off2 off
for n in strict1 strict2 off1 off2; do
  printf '%s %s %s\n' "$n" "$(cat "$out/$n.sha")" "$(grep 'epoch 9' "$out/$n.log")"
done | tee "$out/summary.txt"
head -1 "$out/strict1.log" >> "$out/summary.txt"
