#!/usr/bin/env bash
# The GPU check, sized for one device lease: at most 8.7 minutes of commands in all (every step
# has a timeout), in three parts
# that each append their figures to $OUT/gpu_check.jsonl as soon as they finish, so a part cut
# short by the time limit loses only itself.
#
#   bench     it/s of both recipes (several steps_per_dispatch), 3 vmapped seeds against 1
#   full      the tutorial's 20,000-iteration run end to end, compile and baseline included
#   improved  the Improved-GAN recipe's 180,000-step run, as far as the time left allows
#   bad_gan   (not in "all") Bad GAN: a density model (DENSITY_STEPS, default 3,000 updates),
#             the density candidates' costs on this device (experiments/density_cost.py), and the
#             full schedule of the original, 1.2M iterations, as far as BAD_GAN_SECONDS allows
#   cifar10   (not in "all") the Improved-GAN CIFAR-10 recipe at the paper's schedule, as far as
#             CIFAR_SECONDS allows, where cifar10 is prepared under $TFDS_DATA_DIR; else one line
#   smoke     all three at a few iterations each, on any device: `make gpu-rehearsal` runs it on
#             this CPU machine in a Python 3.12 venv holding only a GPU image's packages and the
#             bundle, so a missing wheel or a newer-jax break shows before a lease is spent
#
# Here (a CPU machine with the venv):  make gpu-bundle      # wheels + cached MNIST, ~20 MB
# On the GPU machine, from the repo root, carrying .whl and .cache/tfds_gpu:
#     bash experiments/gpu_check.sh [bench|full|improved|all]     (default: all)
# It uses the image's own python3 with jax[cuda], flax, optax, orbax-checkpoint, matplotlib,
# absl-py (jax 0.11.x, Python 3.12 there); ml_collections, tensorflow-datasets (with what it
# imports that such an image may lack) and tensorboardX come from .whl/. Logs and figures land in
# ${OUT:-/tmp/gpu_check}; it exits non-zero if a step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
PART="${1:-all}"
mkdir -p "$OUT"
if [ -d .whl ]; then  # into a fresh folder: a stale one would hide a wheel the bundle lacks
  rm -rf /tmp/gpu_check_site
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site \
    .whl/*.whl
  export PYTHONPATH="/tmp/gpu_check_site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" TFDS_DATA_DIR="$PWD/.cache/tfds_gpu" PYTHONUNBUFFERED=1
RESULTS="$OUT/gpu_check.jsonl"
WORK=/tmp/gpu_check_runs  # run folders stay on the machine; only figures come back
# Timeouts, and flags appended to every run (the last of a repeated flag wins). The smoke part
# shrinks the runs, widens the timeouts for a CPU, and works in folders of its own, so a real
# check after it on the same machine starts fresh.
BENCH_TIMEOUT=40 SWEEP_TIMEOUT=40 FULL_TIMEOUT=150 BENCH_ARGS=() RUN_ARGS=()
if [ "$PART" = smoke ]; then
  BENCH_TIMEOUT=300 SWEEP_TIMEOUT=300 FULL_TIMEOUT=600 IMPROVED_SECONDS=150
  # 4 iterations: XLA:CPU runs conv_impl=xla at about 0.1 it/s, after 100 s of compiling.
  BENCH_ARGS=(--iterations=4 --warmup=1 --config.steps_per_dispatch=2)
  RUN_ARGS=(--config.num_iterations=20 --config.steps_per_dispatch=10 --config.eval_every=10
    --config.supervised_epochs=1)
  WORK=/tmp/gpu_check_runs/smoke
  rm -rf "$WORK"
fi
mkdir -p "$WORK"
FAILED=0

record() {  # a JSON object, one line, to the results file and the screen; $2: the exit status
  echo "$1" | tee -a "$RESULTS"
  if [ "${2:-0}" != 0 ]; then FAILED=1; fi
}

seconds_since() {
  python3 -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$1"
}

last_eval() {  # the last evaluation row of the run in folder $1, or null
  python3 -c 'import json, sys; rows = [json.loads(l) for l in open(sys.argv[1])]; \
print(json.dumps([r for r in rows if "test_accuracy" in r][-1]))' "$1/metrics.jsonl" \
    2>/dev/null || echo null
}

bench() {  # name, then benchmark.py arguments; BENCH_TIMEOUT seconds at most each
  local name=$1; shift
  local line
  line=$(timeout "$BENCH_TIMEOUT" python3 experiments/benchmark.py "$@" "${BENCH_ARGS[@]}" \
    2>>"$OUT/bench.log" | tail -n 1)
  record "{\"part\": \"bench\", \"name\": \"$name\", \"result\": ${line:-null}}" \
    "$([ -n "$line" ]; echo $?)"
}

part_bench() {  # under 5 minutes
  python3 -c "import jax, flax, sys; print(sys.version.split()[0], jax.__version__, \
flax.__version__, jax.devices())" 2>&1 | tee -a "$OUT/bench.log"
  bench tutorial_chunk100 --iterations=5000 --config.steps_per_dispatch=100
  bench tutorial_chunk1000 --iterations=20000 --config.steps_per_dispatch=1000
  bench tutorial_chunk1 --iterations=300 --config.steps_per_dispatch=1
  bench tutorial_xla_conv --iterations=5000 --config.conv_impl=xla --config.steps_per_dispatch=100
  bench improved_chunk600 --config=experiments/configs/improved_mnist.py --iterations=30000 \
    --config.steps_per_dispatch=600
  for seeds in 0 0,1,2; do  # 2,000 iterations each, vmapped
    local start; start=$(date +%s.%N)
    timeout "$SWEEP_TIMEOUT" python3 experiments/sweep.py --workdir="$WORK/seeds_$seeds" \
      --num_labeled=100 --seeds=$seeds --vectorize_seeds --config.num_iterations=2000 \
      --config.eval_every=0 --config.supervised_epochs=0 --config.steps_per_dispatch=1000 \
      --config.tensorboard=false "${RUN_ARGS[@]}" >>"$OUT/bench.log" 2>&1
    local status=$?
    record "{\"part\": \"bench\", \"name\": \"vmapped_seeds_$seeds\", \"exit\": $status, \
\"seconds\": $(seconds_since "$start")}" $status
  done
}

part_full() {  # the 20,000-iteration tutorial run, compile included; 150 s at most
  local start; start=$(date +%s.%N)
  timeout "$FULL_TIMEOUT" python3 experiments/train.py --workdir="$WORK/tutorial_full" \
    --config.steps_per_dispatch=1000 "${RUN_ARGS[@]}" >"$OUT/full.log" 2>&1
  local status=$?
  local seconds; seconds=$(seconds_since "$start")
  record "{\"part\": \"full\", \"exit\": $status, \"seconds\": $seconds, \"results\": \
$(cat "$WORK/tutorial_full/results.json" 2>/dev/null | python3 -c 'import json,sys; \
r=json.load(sys.stdin); print(json.dumps({k: r[k] for k in ("test_accuracy", \
"supervised_test_accuracy", "device", "versions", "wall_seconds")}))' 2>/dev/null || echo null)}" \
    $status
}

part_improved() {  # the paper's schedule, stopped by SIGTERM (checkpoint) when time is up
  local start; start=$(date +%s.%N)
  timeout --signal=TERM "${IMPROVED_SECONDS:-90}" python3 experiments/train.py \
    --workdir="$WORK/improved_full" --config=experiments/configs/improved_mnist.py \
    --config.steps_per_dispatch=600 "${RUN_ARGS[@]}" >"$OUT/improved.log" 2>&1
  local status=$?  # 124: stopped by the timeout's SIGTERM, as planned for the full schedule
  record "{\"part\": \"improved\", \"exit\": $status, \"seconds\": $(seconds_since "$start"), \
\"last_eval\": $(last_eval "$WORK/improved_full")}" \
    "$([ $status = 0 ] || [ $status = 124 ]; echo $?)"
}

part_cifar10() {  # CIFAR_SECONDS (default 240) at most; skipped where the data is absent
  if ! python3 -c "import sys, tensorflow_datasets as tfds; \
sys.exit(not tfds.builder('cifar10').is_prepared())" 2>/dev/null; then
    record "{\"part\": \"cifar10\", \"skipped\": \"cifar10 is not prepared in $TFDS_DATA_DIR\"}"
    return
  fi
  local start; start=$(date +%s.%N)
  timeout --signal=TERM "${CIFAR_SECONDS:-240}" python3 experiments/train.py \
    --workdir="$WORK/cifar10_full" --config=experiments/configs/improved_cifar10.py \
    --config.steps_per_dispatch=500 "${RUN_ARGS[@]}" >"$OUT/cifar10.log" 2>&1
  local status=$?  # 124: stopped by the timeout's SIGTERM after a checkpoint, as planned
  record "{\"part\": \"cifar10\", \"exit\": $status, \"seconds\": $(seconds_since "$start"), \
\"last_eval\": $(last_eval "$WORK/cifar10_full")}" \
    "$([ $status = 0 ] || [ $status = 124 ]; echo $?)"
}

part_bad_gan() {  # DENSITY_TIMEOUT + COST_TIMEOUT + BAD_GAN_SECONDS: 7.5 minutes by default
  local start; start=$(date +%s.%N)
  timeout "${DENSITY_TIMEOUT:-120}" python3 experiments/train_density.py \
    --workdir="$WORK/density" --config.num_steps="${DENSITY_STEPS:-3000}" \
    --config.checkpoint_every=1000 >"$OUT/density.log" 2>&1
  local status=$?
  record "{\"part\": \"bad_gan_density\", \"exit\": $status, \"seconds\": \
$(seconds_since "$start"), \"results\": $(python3 -c 'import json, sys; \
print(json.dumps(json.load(open(sys.argv[1]))))' "$WORK/density/results.json" 2>/dev/null \
|| echo null)}" \
    $status
  local line
  line=$(timeout "${COST_TIMEOUT:-150}" python3 experiments/density_cost.py \
    --candidates="${COST_CANDIDATES:-made_1024,pixelcnn_32,pixelcnn_paper}" \
    --steps="${COST_STEPS:-3}" --iterations="${COST_ITERATIONS:-20}" 2>>"$OUT/density.log" \
    | tail -n 1)
  record "{\"part\": \"bad_gan_density_cost\", \"result\": ${line:-null}}" \
    "$([ -n "$line" ]; echo $?)"
  start=$(date +%s.%N)
  # The original's 2,000 epochs of 600 iterations; SIGTERM when the time is up (a checkpoint).
  timeout --signal=TERM "${BAD_GAN_SECONDS:-180}" python3 experiments/train.py \
    --workdir="$WORK/bad_gan_full" --config=experiments/configs/bad_gan_mnist.py \
    --config.num_iterations=1200000 --config.density_path="$WORK/density" \
    --config.steps_per_dispatch=600 "${RUN_ARGS[@]}" >"$OUT/bad_gan.log" 2>&1
  status=$?
  record "{\"part\": \"bad_gan\", \"exit\": $status, \"seconds\": $(seconds_since "$start"), \
\"last_eval\": $(last_eval "$WORK/bad_gan_full")}" \
    "$([ $status = 0 ] || [ $status = 124 ]; echo $?)"
}

case "$PART" in
  bench) part_bench ;;
  full) part_full ;;
  improved) part_improved ;;
  cifar10) part_cifar10 ;;
  bad_gan) part_bad_gan ;;
  all | smoke) part_bench; part_full; part_improved ;;
  *) echo "error: part: must be bench, full, improved, cifar10, bad_gan, all or smoke; got $PART" >&2
    exit 2 ;;
esac
exit $FAILED
