"""Trains the density model that a Bad GAN run reads (sgan_jax/training/density.py).

python experiments/train_density.py --workdir=DIR [--config=experiments/configs/density_mnist.py]
    [--config.KEY=VALUE ...]

Running it again with the same workdir resumes from the newest checkpoint.
"""

import os
import sys

# Config files import each other as experiments.configs.*: put the repo root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from sgan_jax.runs import cli  # noqa: E402
from sgan_jax.training import density  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "density_mnist.py")

flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the density file.")
flags.mark_flag_as_required("workdir")
cli.define_config_flag(_DEFAULT_CONFIG)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_library_logs()
    cli.run_cleanly(lambda: density.train_density(flags.FLAGS.config, flags.FLAGS.workdir))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
