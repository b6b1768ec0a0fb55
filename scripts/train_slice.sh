#!/usr/bin/env bash
# A bounded esr train-gan / train-net slice from a packed data subset, writing the EMA export.
#
#   scripts/train_slice.sh CONFIG MINUTES OUT
#
# Runs from the repository root with PYTHONPATH=src (nothing needs installing; python3 with
# torch, typer, rich, numpy, opencv, pillow, safetensors). The run folder (checkpoints: a
# later slice with the same RUN resumes) is $ESR_SLICE_RUN, default "OUT.run" beside OUT, so
# that OUT gets only what is small: OUT/net_g_ema.safetensors (the EMA export), metrics.jsonl,
# config.toml and slice.log.
# Overrides for a quick test on a small machine (environment):
#   ESR_SLICE_BATCH (train.batch_size), ESR_SLICE_GT (data.gt_size), ESR_SLICE_CROP
#   (data.crop_size), ESR_SLICE_WORKERS (data.num_workers), ESR_SLICE_POOL (train.pool_size),
#   ESR_SLICE_STAGE (train-gan, default, or train-net), PYTHON (default python3).
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 CONFIG MINUTES OUT" >&2
    exit 2
fi
CONFIG=$1
MINUTES=$2
OUT=${3%/}
if ! [[ $MINUTES =~ ^([0-9]+([.][0-9]*)?|[.][0-9]+)$ ]]; then
    echo "train_slice: MINUTES must be a plain number of minutes (e.g. 7 or 2.5), got '$MINUTES'" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
STAGE=${ESR_SLICE_STAGE:-train-gan}
RUN=${ESR_SLICE_RUN:-$OUT.run}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT" "$RUN"
SECONDS_LIMIT=$("$PY" -c "import sys; print(max(1, int(float(sys.argv[1]) * 60)))" "$MINUTES")

# The slice's config: CONFIG with the overrides applied, paths made absolute.
"$PY" - "$CONFIG" "$RUN/slice.toml" "$STAGE" <<'PYEOF'
import dataclasses
import os
import sys

from esrcli.config import load_toml, replace_path, to_toml
from esrcli.config.train import TrainGanConfig, TrainNetConfig
from esrcli.errors import EsrError

src, dst, stage = sys.argv[1:4]
try:
    cfg = load_toml(TrainGanConfig if stage == "train-gan" else TrainNetConfig, src)
    env_int = {}
    for env in ("ESR_SLICE_CROP", "ESR_SLICE_GT", "ESR_SLICE_WORKERS", "ESR_SLICE_BATCH", "ESR_SLICE_POOL"):
        if os.environ.get(env):
            try:
                env_int[env] = int(os.environ[env])
            except ValueError:
                sys.exit(f"train_slice: {env} must be a whole number, got {os.environ[env]!r}")
    data = {key: env_int[env] for env, key in (("ESR_SLICE_CROP", "crop_size"), ("ESR_SLICE_GT", "gt_size"),
            ("ESR_SLICE_WORKERS", "num_workers")) if env in env_int}
    cfg = replace_path(cfg, "data", dataclasses.replace(cfg.data, **data))  # together: crop_size >= gt_size
    for env, key in (("ESR_SLICE_BATCH", "train.batch_size"), ("ESR_SLICE_POOL", "train.pool_size")):
        if env in env_int:
            cfg = replace_path(cfg, key, env_int[env])
except (EsrError, ValueError) as exc:
    msg = str(exc)  # load_toml's messages start with the file already: do not name it twice
    sys.exit(f"train_slice: {msg if msg.startswith(src) else f'{src}: {msg}'}")
missing = [str(f) for f in cfg.data.folders if not f.is_dir()]
if missing:
    sys.exit(f"train_slice: data folder missing: {', '.join(missing)} (run python scripts/pack_train_subset.py first)")
with open(dst, "w", encoding="utf-8") as fh:
    fh.write(to_toml(cfg) + "\n")
PYEOF

echo "train_slice: $STAGE $CONFIG for ${MINUTES} min (${SECONDS_LIMIT} s) in $RUN -> $OUT" >&2
status=0
"$PY" -m esrcli "$STAGE" "$RUN/slice.toml" -o "$RUN" --time-limit "$SECONDS_LIMIT" 2>&1 | tee "$OUT/slice.log" || status=$?
for f in net_g_ema.safetensors metrics.jsonl config.toml; do
    if [ -f "$RUN/$f" ]; then cp "$RUN/$f" "$OUT/$f"; fi
done
if [ -f "$OUT/net_g_ema.safetensors" ]; then
    echo "train_slice: EMA export $OUT/net_g_ema.safetensors" >&2
else
    echo "train_slice: no export written (see $OUT/slice.log)" >&2
    status=${status:-1}
    [ "$status" -ne 0 ] || status=1
fi
exit "$status"
