"""Iterations per second of a recipe's training step, after compilation and warm-up.

python experiments/benchmark.py --iterations=250 --batch_size=32 [--config=...]
    [--config.KEY=VALUE ...]

The last line printed is one JSON object: it_per_s, batch_size, backend, device,
compile_seconds (and the settings used). Compare with ../shared/baselines/keras_sgan.py
--iterations 250, run on the same machine in the same sitting.
"""

import json
import os
import sys

# Config files import each other as experiments.configs.*: put the repo root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from sgan_jax.runs import cli  # noqa: E402
from sgan_jax.runs.errors import ConfigError  # noqa: E402
from sgan_jax.training import benchmark  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "sgan_mnist.py")

flags.DEFINE_integer("iterations", 250, "Timed iterations.")
flags.DEFINE_integer("batch_size", None, "Batch size (default: the config's).")
flags.DEFINE_integer("warmup", 10, "Untimed iterations after compilation.")
cli.define_config_flag(_DEFAULT_CONFIG)


def _run():
    config = flags.FLAGS.config
    if flags.FLAGS.iterations <= 0:
        raise ConfigError("iterations", f"must be > 0; got {flags.FLAGS.iterations}")
    if flags.FLAGS.batch_size is not None:
        with config.unlocked():
            config.batch_size = flags.FLAGS.batch_size
    result = benchmark.benchmark(config, flags.FLAGS.iterations, flags.FLAGS.warmup)
    print(json.dumps(result), flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_library_logs()
    cli.run_cleanly(_run)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
