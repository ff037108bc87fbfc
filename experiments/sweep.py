"""Label-budget sweep: SGAN and the supervised baseline over budgets and seeds.

python experiments/sweep.py --workdir=DIR --num_labeled=20,50,100 --seeds=0,1,2
    [--config=experiments/configs/sgan_mnist.py] [--config.KEY=VALUE ...] [--vectorize_seeds]
    [--jobs=N] [--num_shards=N --shard_index=I]

Writes DIR/results.csv, DIR/summary.md and DIR/accuracy_vs_labels.png, and one subfolder per
run; the three files are rewritten as each run ends. Running the same command again skips
finished runs and resumes unfinished ones; with --status it prints where every run is and trains
nothing.
"""

import os
import sys

# Config files import each other as experiments.configs.*: put the repo root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from sgan_jax.runs import cli  # noqa: E402
from sgan_jax.runs.errors import ConfigError  # noqa: E402
from sgan_jax.sweeps import sweep  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "sgan_mnist.py")

flags.DEFINE_string("workdir", None, "Directory of the sweep.")
flags.mark_flag_as_required("workdir")
flags.DEFINE_list("num_labeled", ["20", "50", "100", "200", "500", "1000"], "Label budgets.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (initialisation and noise).")
flags.DEFINE_bool("vectorize_seeds", False, "Train all seeds of a budget in one vmapped program.")
flags.DEFINE_bool(
    "vary_data_seed",
    True,
    "Set data_seed = seed: with label_selection=balanced each seed draws its own labeled set "
    "(and validation images); with first the labels are the same in every run, and summary.md "
    "says so.",
)
flags.DEFINE_integer(
    "jobs",
    1,
    "Runs at once on this host, each a train.py process: one per GPU, or one per "
    "group of CPU cores.",
)
flags.DEFINE_bool(
    "status",
    False,
    "Print the sweep's tables with a line per run, finished or not (latest step, test "
    "accuracy, best validation so far), and exit; writes nothing.",
)
flags.DEFINE_integer("num_shards", 1, "Split the run list into this many disjoint parts...")
flags.DEFINE_integer("shard_index", 0, "...and run this one (e.g. $SLURM_ARRAY_TASK_ID).")
cli.define_config_flag(_DEFAULT_CONFIG)
cli.define_distributed_flags()


def _integers(name: str, values: list[str]) -> list[int]:
    try:
        parsed = [int(v) for v in values]
    except ValueError:
        raise ConfigError(name, f"must be comma-separated integers; got {values}") from None
    if not parsed:
        raise ConfigError(name, "is empty")
    return parsed


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_library_logs()
    cli.maybe_initialize_distributed()
    config_flag = flags.FLAGS["config"]
    options = sweep.Options(
        vectorize_seeds=flags.FLAGS.vectorize_seeds,
        vary_data_seed=flags.FLAGS.vary_data_seed,
        jobs=flags.FLAGS.jobs,
        num_shards=flags.FLAGS.num_shards,
        shard_index=flags.FLAGS.shard_index,
        config_file=config_flags.get_config_filename(config_flag),
        config_overrides=tuple(
            f"--config.{key}={value}"
            for key, value in config_flags.get_override_values(config_flag).items()
        ),
    )
    action = sweep.print_status if flags.FLAGS.status else sweep.run_sweep
    cli.run_cleanly(
        lambda: action(
            flags.FLAGS.config,
            flags.FLAGS.workdir,
            _integers("num_labeled", flags.FLAGS.num_labeled),
            _integers("seeds", flags.FLAGS.seeds),
            options,
        )
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
