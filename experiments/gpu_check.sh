#!/usr/bin/env bash
# One-go GPU check: benchmarks and a full tutorial run, then a short table.
#
# Here (a CPU machine with the venv):  make gpu-bundle      # wheels + prepared MNIST, ~40 MB
# On the GPU machine, from the repo root, carrying .whl and .cache/tfds/mnist:
#     bash experiments/gpu_check.sh
# It expects python3 with jax[cuda], flax, optax, orbax-checkpoint, matplotlib and absl-py
# (the device image has them); ml_collections and tensorflow-datasets come from .whl/.
# Everything it measures lands in ${OUT:-/tmp/gpu_check}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" TFDS_DATA_DIR="$PWD/.cache/tfds" PYTHONUNBUFFERED=1
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee "$OUT/devices.txt"

bench() {  # name, then benchmark.py arguments
  local name=$1; shift
  python3 experiments/benchmark.py "$@" 2>"$OUT/$name.log" | tail -n 1 | tee "$OUT/$name.json"
}
bench tutorial_b32_chunk100 --iterations=5000 --batch_size=32 --config.steps_per_dispatch=100
bench tutorial_b32_chunk1 --iterations=500 --batch_size=32 --config.steps_per_dispatch=1
bench tutorial_b32_chunk1000 --iterations=20000 --batch_size=32 --config.steps_per_dispatch=1000
bench tutorial_b32_xla_conv --iterations=5000 --batch_size=32 --config.conv_impl=xla
bench tutorial_b32_matmul_conv --iterations=5000 --batch_size=32 --config.conv_impl=matmul
bench improved_b100 --config=experiments/configs/improved_mnist.py --iterations=20000 \
  --config.steps_per_dispatch=1000

# The full tutorial run: 20,000 iterations, 100 labels, seed 0, compile included.
start=$(date +%s.%N)
python3 experiments/train.py --workdir="$OUT/tutorial_full" --config.supervised_epochs=30 \
  --config.steps_per_dispatch=1000 >"$OUT/tutorial_full.log" 2>&1
end=$(date +%s.%N)
echo "{\"full_run_seconds\": $(echo "$end - $start" | bc)}" >"$OUT/full_run.json"

# Vectorised seeds: 3 seeds in one program against 1.
for seeds in 0 0,1,2; do
  start=$(date +%s.%N)
  python3 experiments/sweep.py --workdir="$OUT/sweep_$seeds" --num_labeled=100 --seeds=$seeds \
    --vectorize_seeds --config.supervised_epochs=0 --config.steps_per_dispatch=1000 \
    >"$OUT/sweep_$seeds.log" 2>&1
  end=$(date +%s.%N)
  echo "$seeds $(echo "$end - $start" | bc)" >>"$OUT/vectorized_seeds.txt"
done

python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("\n| measurement | value |\n|---|---|")
for f in sorted(out.glob("*_b*.json")):
    r = json.loads(f.read_text())
    print(f"| {f.stem} it/s | {r['it_per_s']:.1f} (compile {r['compile_seconds']:.1f} s) |")
results = json.loads((out / "tutorial_full" / "results.json").read_text())
full = json.loads((out / "full_run.json").read_text())
print(f"| full 20k-iteration run, wall (compile, eval, baseline included) | "
      f"{full['full_run_seconds']:.1f} s |")
print(f"| full run SGAN / supervised test accuracy | {results['test_accuracy']:.4f} / "
      f"{results['supervised_test_accuracy']:.4f} |")
for line in (out / "vectorized_seeds.txt").read_text().splitlines():
    seeds, seconds = line.split()
    print(f"| sweep, seeds {seeds}, vectorised | {float(seconds):.1f} s |")
print(f"| device | {results['device']} |")
PY

# Last, as the longest: the Improved-GAN recipe's full schedule (180,000 steps, 100 labels,
# seed 0), for the README's full-length row. Whatever it reaches before the time limit stays in
# $OUT/improved_full (metrics.jsonl has the test and validation accuracies along the way).
start=$(date +%s.%N)
python3 experiments/train.py --workdir="$OUT/improved_full" \
  --config=experiments/configs/improved_mnist.py --config.steps_per_dispatch=600 \
  >"$OUT/improved_full.log" 2>&1 || true
end=$(date +%s.%N)
python3 - "$OUT" "$(echo "$end - $start" | bc)" <<'PY'
import json, pathlib, sys
out, seconds = pathlib.Path(sys.argv[1]) / "improved_full", float(sys.argv[2])
path = out / "results.json"
if path.exists():
    r = json.loads(path.read_text())
    print(f"| improved 180k: test / selected (step) / supervised | {r['test_accuracy']:.4f} / "
          f"{r.get('selected_test_accuracy') or float('nan'):.4f} ({r.get('best_validation_step')}) / "
          f"{r.get('supervised_test_accuracy') or float('nan'):.4f} |")
print(f"| improved 180k wall | {seconds:.1f} s |")
PY
