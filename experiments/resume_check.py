"""Kill a run with SIGKILL after a checkpoint, restart it, and compare with an uninterrupted run.

python experiments/resume_check.py --workdir=DIR [--kill_after=150] [--config.KEY=VALUE ...]

Trains DIR/uninterrupted, then DIR/killed, which is SIGKILLed as soon as its checkpoint at step
--kill_after exists and then run again with the same command. The last line printed is JSON:
whether metrics.jsonl (timing fields aside) and the test accuracies are identical.
"""

import json
import os
import signal
import subprocess
import sys
import time

from absl import app, flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from sgan_jax.runs import metrics  # noqa: E402

flags.DEFINE_string("workdir", None, "Directory for the two runs.")
flags.mark_flag_as_required("workdir")
flags.DEFINE_integer("kill_after", 150, "Kill once the checkpoint of this step is written.")
flags.DEFINE_multi_string(
    "override",
    ["--config.num_iterations=300", "--config.checkpoint_every=50"],
    "Flags passed to experiments/train.py.",
)


def _train_command(workdir: str) -> list[str]:
    train = os.path.join(_REPO, "experiments", "train.py")
    return [sys.executable, train, f"--workdir={workdir}", *flags.FLAGS.override]


def _untimed(workdir: str) -> list[dict]:
    rows = metrics.read_rows(os.path.join(workdir, "metrics.jsonl"))
    return [{k: v for k, v in r.items() if k not in metrics.TIMING_FIELDS} for r in rows]


def main(argv):
    del argv
    root = flags.FLAGS.workdir
    uninterrupted, killed = os.path.join(root, "uninterrupted"), os.path.join(root, "killed")
    subprocess.run(_train_command(uninterrupted), check=True, capture_output=True)
    process = subprocess.Popen(
        _train_command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = os.path.join(killed, "checkpoints", str(flags.FLAGS.kill_after), "commit_success.txt")
    while not os.path.exists(marker):
        if process.poll() is not None:
            raise SystemExit("the run ended before its checkpoint; nothing was killed")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(r["step"] for r in metrics.read_rows(os.path.join(killed, "metrics.jsonl")))
    resumed = subprocess.run(_train_command(killed), check=True, capture_output=True, text=True)
    a = metrics.read_json(os.path.join(uninterrupted, "results.json"))
    b = metrics.read_json(os.path.join(killed, "results.json"))
    report = dict(
        killed_after_checkpoint=flags.FLAGS.kill_after,
        last_logged_step_when_killed=killed_at,
        resumed_message=[line for line in resumed.stdout.splitlines() if "Resumed" in line],
        metrics_identical=_untimed(uninterrupted) == _untimed(killed),
        test_accuracy=[a["test_accuracy"], b["test_accuracy"]],
        test_accuracy_identical=a["test_accuracy"] == b["test_accuracy"],
        supervised_identical=a["supervised_test_accuracy"] == b["supervised_test_accuracy"],
    )
    print(json.dumps(report))


if __name__ == "__main__":
    app.run(main)
