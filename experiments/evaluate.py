"""Evaluates a run's saved checkpoint again: accuracy, per-class accuracy, confusion matrix.

python experiments/evaluate.py --workdir=RUN [--checkpoint=newest|best] [--step=N]
    [--output=FILE.json]

RUN is one run's workdir (a sweep's runs are its labels<N>_seed<S> folders). The weights the run
reports (the EMA where it keeps one) are evaluated, and the raw weights beside them; nothing in
RUN is written, so a run still training can be looked at. --output writes the figures as JSON.
"""

import os
import sys

# Run as a script: put the repo root on the path, as the other entry points do.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from sgan_jax.runs import cli, metrics  # noqa: E402
from sgan_jax.training import evaluation  # noqa: E402

flags.DEFINE_string("workdir", None, "The run's workdir (with config.json and checkpoints/).")
flags.DEFINE_enum(
    "checkpoint", "newest", list(evaluation.CHECKPOINT_FOLDERS), "Which checkpoint folder."
)
flags.DEFINE_integer("step", None, "A saved step (default: the newest in the folder).")
flags.DEFINE_string("output", None, "Also write the figures to this JSON file.")
flags.mark_flag_as_required("workdir")


def _print(result: dict) -> None:
    print(
        f"{result['workdir']}: {result['method']}, {result['checkpoint']} checkpoint, "
        f"step {result['step']}"
    )
    for name, figures in result.items():
        if isinstance(figures, dict):
            print(
                f"  {name:20s} {100 * figures['accuracy']:6.2f}%  "
                f"({figures['errors']} errors in {figures['examples']})"
            )
    test = result["evaluated_test"]
    classes = range(len(test["per_class_accuracy"]))
    print("evaluated weights on test: per class (rows: true class, columns: predicted)")
    print("      " + "".join(f"{c:>6d}" for c in classes) + "  accuracy")
    for c, row in zip(classes, test["confusion_matrix"], strict=True):
        counts = "".join(f"{n:>6d}" for n in row)
        print(f"{c:>6d}{counts}  {100 * test['per_class_accuracy'][c]:6.2f}%")
    mistakes = ", ".join(
        f"{m['true']}->{m['predicted']} ({m['count']})" for m in test["commonest_mistakes"]
    )
    print(f"commonest mistakes: {mistakes or 'none'}")


def _run():
    result = evaluation.evaluate_checkpoint(
        flags.FLAGS.workdir, flags.FLAGS.checkpoint, flags.FLAGS.step
    )
    _print(result)
    if flags.FLAGS.output:
        metrics.atomic_write_json(flags.FLAGS.output, result)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_library_logs()
    cli.run_cleanly(_run)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
