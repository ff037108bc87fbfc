#!/usr/bin/env bash
# Side-by-side CPU speed: ours against the Keras (and PyTorch) references, alternating runs on
# the same machine, best of N each. Needs `make setup-baselines` (tf-keras, torch).
#   bash experiments/compare_cpu_speed.sh [ROUNDS=2] [ITERATIONS=250]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}"
ITERATIONS="${2:-250}"
PY=.venv/bin/python
MNIST="${SGAN_MANUAL_DIR:-../shared/data}/mnist"
BASELINES="$(dirname "$MNIST")/../baselines"
export JAX_PLATFORMS=cpu
for round in $(seq "$ROUNDS"); do
  echo "keras round $round: $($PY "$BASELINES/keras_sgan.py" --mnist_dir "$MNIST" \
    --iterations "$ITERATIONS" 2>/dev/null | tail -n 1)"
  echo "jax round $round: $($PY experiments/benchmark.py --iterations="$ITERATIONS" \
    --batch_size=32 2>/dev/null | tail -n 1)"
  echo "torch round $round: $($PY "$BASELINES/torch_sgan.py" --mnist_dir "$MNIST" \
    --iterations "$ITERATIONS" 2>/dev/null | tail -n 1)"
done
