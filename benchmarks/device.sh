#!/usr/bin/env bash
# One command on a GPU machine, within 8 minutes: (a) the paper recipe and (b) SimCLR R50 224²
# (benchmarks/train_step.py), (c) the spectrogram frontend and feature extraction, (d) the
# PyTorch peer (ours/peer), (e) the host input pipeline on all cores. Writes one JSON per part
# and summary.md, a Markdown block ready for benchmarks/RESULTS.md, under $OUT_DIR.
#
#   bash benchmarks/device.sh              # installs .[cuda,bench] unless JAX already sees a GPU
#   SMOKE=1 bash benchmarks/device.sh      # tiny sizes on a CPU (tests/test_device_sh.py)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-benchmarks/out/device}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT"

if [ "$SMOKE" != 1 ] && ! $PY -c "import jax, torch, torchvision; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
  $PY -m pip install -q -e ".[cuda,bench]"
fi

if [ "$SMOKE" = 1 ]; then
  TRAIN=(--recipes paper --batch-paper 8 --batch-r50 4 --width-paper 8 --width-r50 8 --size-r50 32 --steps 2)
  PEER=(--recipes paper --eager --batch-paper 4 --batch-r50 2 --size-paper 32 32 --size-r50 32 --queue 16 --steps 1)
  SPECTRO=(--batch 64 --matplotlib-subset 4 --repeats 1)
  FINETUNE=(--parts extract --width 8 --n 64 --batch 32 --n-single 4 --repeats 1)
  INPUT=(--batch 16 --full-records 64 --prepared-records 128 --measure-images 64 --augment-batch 16)
  LIMIT=300 SHORT=300  # a contended 2-core CPU compiles slowly
else
  TRAIN=() PEER=() SPECTRO=() FINETUNE=(--parts extract) INPUT=()
  LIMIT=150 SHORT=60
fi

part() {  # name, seconds, script and its arguments: a failure is logged, the rest still runs
  local name=$1 seconds=$2; shift 2
  local start=$SECONDS
  if timeout "$seconds" $PY "$@" --out "$OUT/$name.json" >"$OUT/$name.log" 2>&1; then
    echo "$name: done in $((SECONDS - start)) s"
  else
    echo "$name: FAILED or timed out after $((SECONDS - start)) s (see $OUT/$name.log)"
  fi
}

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
part train_step "$LIMIT" benchmarks/train_step.py "${TRAIN[@]}"
part peer_torch "$LIMIT" benchmarks/peer_torch.py --ours "$OUT/train_step.json" "${PEER[@]}"
part spectrogram "$SHORT" benchmarks/spectrogram.py "${SPECTRO[@]}"
part finetune "$SHORT" benchmarks/finetune.py "${FINETUNE[@]}"
part input_pipeline "$SHORT" benchmarks/input_pipeline.py "${INPUT[@]}"
$PY benchmarks/device_summary.py "$OUT" >"$OUT/summary.md" && cat "$OUT/summary.md"
