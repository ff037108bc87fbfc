"""What the training loop keeps track of on the host: which steps log, eval, sample and save;
the best validation eval (for selection and early stopping); wall time across resumes; the
training rate; the metrics row, the NaN check and the progress line."""

import dataclasses
import time

import jax.numpy as jnp
import numpy as np
from absl import logging

from sgan_jax.runs import workdir
from sgan_jax.runs.errors import NonFiniteError


class EvalTracker:
    """Best validation accuracy so far, and evals since it improved (for early stopping)."""

    def __init__(self, rows: list[dict], patience: int):
        self.patience = patience
        self.best = None  # the eval row with the best validation accuracy
        self.since_best = 0
        for row in rows:
            if "validation_accuracy" in row:
                self.update(row)

    def update(self, row: dict) -> bool:
        """Records an eval row; True if it is the new best."""
        if self.best is None or row["validation_accuracy"] > self.best["validation_accuracy"]:
            self.best, self.since_best = row, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience


@dataclasses.dataclass
class Clock:
    """Wall time of this process, and of the run across resumes (from the checkpoint's)."""

    process_start: float
    before: float = 0.0  # the run's seconds up to the checkpoint this process resumed from
    ended: float | None = None  # a stopped clock reads the time it was stopped at

    def process_seconds(self) -> float:
        return (self.ended or time.time()) - self.process_start

    def run_seconds(self) -> float:
        return self.before + self.process_seconds()


class RateTimer:
    """Iterations per second of training since the last log step, host work excluded."""

    def __init__(self, step: int):
        self.seconds, self.steps = 0.0, 0
        self.mark(step)

    def mark(self, step: int) -> None:
        self._time, self._step = time.time(), step

    def rate(self, step: int) -> float:
        self.seconds += time.time() - self._time
        self.steps += step - self._step
        return self.steps / self.seconds if self.seconds else float("nan")

    def restart(self) -> None:
        self.seconds, self.steps = 0.0, 0


def _short(name: str) -> str:
    """d_loss_supervised -> d_supervised: a metric's name in the progress line."""
    return name.replace("_loss", "")


def log_progress(row: dict, config, rate: float, names, prefix: str = "") -> None:
    """The progress line: the step, the metrics `names` (accuracies in %), the evals, the rate."""
    eta = (config.num_iterations - row["step"]) / rate if rate > 0 else 0.0
    values = "".join(
        f"  {_short(n)} {100 * row[n]:.1f}%" if "accuracy" in n else f"  {_short(n)} {row[n]:.4f}"
        for n in names
    )
    evals = "".join(
        f"  {key.split('_')[0]} {100 * row[key]:.2f}%"
        for key in ("test_accuracy", "validation_accuracy")
        if key in row
    )
    logging.info(
        "%sstep %d/%d%s%s  %.2f it/s  ETA %s",
        prefix,
        row["step"],
        config.num_iterations,
        values,
        evals,
        rate,
        workdir.format_duration(eta),
    )


def is_boundary(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def steps_to_next_boundary(step: int, config) -> int:
    candidates = [config.num_iterations - step]
    for every in (
        config.log_every,
        config.eval_every,
        config.sample_every,
        config.checkpoint_every,
    ):
        if every > 0:
            candidates.append(every - step % every)
    return min(candidates)


def row(step, host, evals, is_log, rate, clock, names) -> dict:
    """The metrics.jsonl row of `step`: the means of the metrics `names` since the last log,
    evals, timing."""
    row = {"step": step}
    if is_log:
        means = host["metric_sums"] / max(int(host["metric_count"]), 1)
        row.update({n: float(v) for n, v in zip(names, means, strict=True)})
    row.update(evals)
    if is_log:
        row["it_per_s"] = rate
        row["elapsed_seconds"] = clock.run_seconds()
        row["process_elapsed_seconds"] = clock.process_seconds()
    return row


def resumed_window(state, rows, start_step: int, log_every: int, clock, names):
    """(state, row or None) for a run resumed at `start_step`. The train step starts a fresh
    window of metric sums at each multiple of log_every; a checkpoint carries the sums since the
    last logged step. If `start_step` was logged, its window is closed (a multiple of another
    log_every, or the last step of a run now lengthened, would count it again). If not, and the
    step starts a window now, the carried steps are logged at `start_step` before they reset."""
    logged = any(r["step"] == start_step and names[0] in r for r in rows)
    count = int(np.asarray(state.metric_count))
    if not start_step or count == 0:
        return state, None
    closed = state.replace(metric_count=jnp.zeros_like(state.metric_count))
    if logged:
        return closed, None
    if log_every and start_step % log_every == 0:
        host = {"metric_sums": np.asarray(state.metric_sums), "metric_count": count}
        window = row(start_step, host, {}, True, float("nan"), clock, names)
        del window["it_per_s"]  # this process trained none of it
        return closed, window
    return state, None


def check_finite(host: dict, checkpointer, names) -> None:
    if host["nonfinite_step"] >= 0:
        saved = checkpointer.steps()
        raise NonFiniteError(
            int(host["nonfinite_step"]) + 1,
            names[int(host["nonfinite_metric"])],
            float(host["nonfinite_value"]),
            saved[-1] if saved else None,
        )
