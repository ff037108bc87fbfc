"""One table and plot from several sweeps' results.csv.

python experiments/merge_sweeps.py --sweeps=DIR1,DIR2,... --workdir=OUT [--title=...]
    [--legacy_method=NAME]

Writes OUT/results.csv, OUT/summary.md and OUT/accuracy_vs_labels.png, as sweep.py does. Rows
of one method from different configs, and a (num_labeled, seed, method, label_selection) found
in two sweeps, are refused. A results.csv from before rows named their method (every GAN row
"sgan") is read with --legacy_method naming the method that ran; OUT may be one of the sweeps,
to migrate its files to the current columns.
"""

import os
import sys

# Run as a script: put the repo root on the path, as the other entry points do.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from sgan_jax.runs import cli  # noqa: E402
from sgan_jax.sweeps import sweep_results  # noqa: E402

flags.DEFINE_list("sweeps", None, "Sweep workdirs whose results.csv to merge.")
flags.DEFINE_string("workdir", None, "Where the merged files go.")
flags.DEFINE_string("title", "Accuracy vs labels", "Title of the table and the plot.")
flags.DEFINE_string(
    "legacy_method",
    None,
    "The method of the GAN rows of results.csv files written before rows named their method.",
)
flags.mark_flag_as_required("sweeps")
flags.mark_flag_as_required("workdir")


def _run():
    sweep_results.merge_sweeps(
        flags.FLAGS.sweeps, flags.FLAGS.workdir, flags.FLAGS.title, flags.FLAGS.legacy_method
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.run_cleanly(_run)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
