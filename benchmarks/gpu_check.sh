#!/usr/bin/env bash
# esr on one CUDA GPU in one prepared run (about 4 minutes on an H200; each step has a time
# limit, 240 + 300 + 270 s, so at most about 14 minutes; no network, installs nothing):
#   1. the CUDA tests (pytest -m cuda),
#   2. benchmarks/gpu_check.py: CUDA vs CPU outputs, upscale / training / degradation speed
#      against plain PyTorch in the same run, the train-net loop on the GPU,
#   3. torchrun --nproc-per-node 1 train-net with NCCL, killed after its first checkpoint, then
#      resumed to the end.
# Usage (repository root):  bash benchmarks/gpu_check.sh [OUT] [HR_FOLDER] [X4PLUS_FILE]
#   OUT        results folder (default $OUT or gpu-out): gpu_check.json, gpu_check.md, logs
#   HR_FOLDER  a few HR training images (>= 400 px) for the training loop and torchrun parts
#   X4PLUS     RealESRGAN_x4plus weights if esr has none embedded
# gpu-out/ is in .gitignore. Without a CUDA GPU it says so and exits (code 2) without running
# or writing anything; `python benchmarks/gpu_check.py --dry-run` checks the Python part on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu-out}}
DATA=${2:-.gpu/data}
X4PLUS=${3:-}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null; then
  echo "gpu_check.sh: no CUDA GPU here (torch.cuda.is_available() is false, or $PY cannot import torch): nothing run." >&2
  echo "  On a CUDA machine it runs the CUDA tests, benchmarks/gpu_check.py and a torchrun kill + resume, writing to $OUT_DIR/." >&2
  echo "  To check the Python part on this CPU: PYTHONPATH=src $PY benchmarks/gpu_check.py --dry-run --out /tmp/gpu-dry" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"
status=0
start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*"; }

stamp "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())"

STEPS=${STEPS:-tests,check,torchrun}
if [[ $STEPS == *tests* ]]; then
stamp "1. CUDA tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider -m cuda -rs tests/ 2>&1 | tee "$OUT_DIR/pytest_cuda.log" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || { status=1; stamp "CUDA tests FAILED"; }
fi

if [[ $STEPS == *check* ]]; then
stamp "2. gpu_check.py"
args=(--out "$OUT_DIR")
[ -d "$DATA" ] && args+=(--data "$DATA" --loop-iters 12)
[ -n "$X4PLUS" ] && args+=(--x4plus "$X4PLUS")
[ -n "${SECTIONS:-}" ] && args+=(--sections "$SECTIONS")
timeout 300 $PY benchmarks/gpu_check.py "${args[@]}" 2>&1 | tee "$OUT_DIR/gpu_check.log" | grep -v '^{' | tail -60
[ "${PIPESTATUS[0]}" -eq 0 ] || { status=1; stamp "gpu_check.py FAILED"; }
fi

if [[ $STEPS == *torchrun* ]] && [ -d "$DATA" ]; then
  stamp "3. torchrun train-net (NCCL), kill after the first checkpoint, resume"
  RUN=$(mktemp -d)
  cat > "$RUN/ddp.toml" <<EOF
[model]
arch = "SRVGGNetCompact"
num_feat = 64
num_conv = 16
[data]
folders = ["$(realpath "$DATA")"]
gt_size = 256
crop_size = 400
num_workers = 4
[train]
total_iter = ${DDP_ITERS:-40}
batch_size = ${DDP_BATCH:-16}
pool_size = $(( 2 * ${DDP_BATCH:-16} ))
checkpoint_interval = $(( ${DDP_ITERS:-40} / 4 ))
log_interval = 1
device = "auto"
EOF
  $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m esrcli train-net "$RUN/ddp.toml" -o "$RUN/out" > "$OUT_DIR/torchrun_1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    ls "$RUN/out/checkpoints/"iter_*.pt >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || break
    sleep 1
  done
  first=$(ls "$RUN/out/checkpoints/" 2>/dev/null | tr '\n' ' ')
  # torchrun's workers run in sessions of their own: kill the launcher and every worker at once
  pkill -KILL -f "$RUN/ddp.toml"; wait $pid 2>/dev/null
  stamp "killed after checkpoint(s): ${first:-none}"
  timeout 150 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m esrcli train-net "$RUN/ddp.toml" -o "$RUN/out" > "$OUT_DIR/torchrun_2.log" 2>&1
  rc=$?
  tail -5 "$OUT_DIR/torchrun_2.log"
  if [ $rc -eq 0 ] && grep -q "resumed from" "$OUT_DIR/torchrun_2.log" && [ -f "$RUN/out/net_g_ema.safetensors" ]; then
    stamp "torchrun kill + resume: OK ($(grep -o 'resumed from.*' "$OUT_DIR/torchrun_2.log" | head -1))"
    echo "torchrun_resume=ok" >> "$OUT_DIR/summary.txt"
  else
    status=1; stamp "torchrun kill + resume FAILED (rc $rc)"; tail -20 "$OUT_DIR/torchrun_1.log"
    echo "torchrun_resume=failed" >> "$OUT_DIR/summary.txt"
  fi
  rm -rf "$RUN"
else
  if [[ $STEPS != *torchrun* ]]; then
    stamp "3. skipped (STEPS=$STEPS)"
  else
    stamp "3. skipped: no HR folder at $DATA (pass one as the second argument)"
  fi
fi

stamp "done (status $status)"
[ -f "$OUT_DIR/gpu_check.md" ] && cat "$OUT_DIR/gpu_check.md"
exit $status
