"""Measures what each density model Bad GAN could read costs on this machine: per epoch of its
training and per Bad GAN iteration (sgan_jax/training/density_cost.py).

python experiments/density_cost.py [--candidates=made_1024,pixelcnn_32,...] [--steps=3]
    [--iterations=20] [--output=FILE.json]

Prints a markdown table (docs/BAD_GAN.md keeps the one that chose the model) and, last, one
JSON object of the figures.
"""

import json
import os
import sys
import tempfile

# Config files import each other as experiments.configs.*: put the repo root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from experiments.configs import bad_gan_mnist, density_mnist  # noqa: E402
from sgan_jax.runs import cli, metrics  # noqa: E402
from sgan_jax.runs.errors import ConfigError  # noqa: E402
from sgan_jax.training import density_cost  # noqa: E402

flags.DEFINE_list("candidates", list(density_cost.CANDIDATES), "Candidates to measure.")
flags.DEFINE_integer("steps", 3, "Timed density updates a candidate (after one to compile).")
flags.DEFINE_integer("iterations", 20, "Timed Bad GAN iterations, LD off and on.")
flags.DEFINE_string("output", None, "Also write the figures to this JSON file.")


def _run():
    unknown = sorted(set(flags.FLAGS.candidates) - set(density_cost.CANDIDATES))
    if unknown:
        raise ConfigError(
            "candidates", f"unknown {unknown}; known: {', '.join(density_cost.CANDIDATES)}"
        )
    for name in ("steps", "iterations"):
        if flags.FLAGS[name].value <= 0:
            raise ConfigError(name, f"must be > 0; got {flags.FLAGS[name].value}")
    gan_config = bad_gan_mnist.get_config()
    rows = {}
    for name in flags.FLAGS.candidates:
        config = density_cost.with_overrides(
            density_mnist.get_config(), density_cost.CANDIDATES[name]
        )
        with tempfile.TemporaryDirectory() as folder:
            rows[name] = density_cost.measure(
                config, gan_config, folder, flags.FLAGS.steps, flags.FLAGS.iterations
            )
        print(name, json.dumps(rows[name]), flush=True)
    print(density_cost.markdown(rows, gan_config))
    if flags.FLAGS.output:
        metrics.atomic_write_json(flags.FLAGS.output, rows)
    print(json.dumps(rows), flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_library_logs()
    cli.run_cleanly(_run)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
