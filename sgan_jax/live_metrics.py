"""TensorBoard event files in the workdir, beside metrics.jsonl: every logged scalar, the test
and validation accuracies at eval steps, the learning rates and the generator's sample grids.

`tensorboard --logdir=DIR` shows a run, and pointed at a sweep's folder, every run of it, each
under its folder's name. The writer is tensorboardX, not clu.metric_writers, Flax's usual one:
clu imports TensorFlow as it loads (its SummaryWriter is tf.summary), and TensorFlow is neither
in the accelerator images we run on nor welcome in a process that holds the GPUs; tensorboardX
writes the same event files in pure Python.
"""

import numbers

import numpy as np
from absl import logging

from sgan_jax import state as state_lib


class EventWriter:
    """Writes one run's events; a no-op where `enabled` is False (the processes that write no
    files, or tensorboard=False)."""

    def __init__(self, workdir: str, config, start_step: int, enabled: bool):
        self._writer = None
        self._schedules = {
            "learning_rate": state_lib.learning_rate_schedule(config, config.learning_rate),
            "generator_learning_rate": state_lib.learning_rate_schedule(
                config, config.generator_learning_rate or config.learning_rate
            ),
        }
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            logging.warning("tensorboardX is not installed: no TensorBoard event files.")
            return
        # After a resume from step N, TensorBoard drops the earlier files' events after N: the
        # resumed run writes them again.
        purge_step = start_step + 1 if start_step else None
        self._writer = SummaryWriter(logdir=workdir, purge_step=purge_step, flush_secs=30)

    def scalars(self, row: dict) -> None:
        """A metrics.jsonl row's numbers; at log steps also the learning rates in force."""
        if self._writer is None:
            return
        step = row["step"]
        for key, value in row.items():
            if key != "step" and isinstance(value, numbers.Real):
                self._writer.add_scalar(key, value, step)
        if "g_loss" in row:  # a log step
            for key, schedule in self._schedules.items():
                rate = schedule(step) if callable(schedule) else schedule
                self._writer.add_scalar(key, float(rate), step)

    def samples(self, step: int, images: np.ndarray) -> None:
        """A square grid of the generator's images (N, H, W, C) in [0, 1]."""
        if self._writer is None:
            return
        side = int(np.sqrt(len(images)))
        grid = images[: side * side].reshape(side, side, *images.shape[1:])
        grid = grid.transpose(0, 2, 1, 3, 4).reshape(
            side * images.shape[1], side * images.shape[2], -1
        )
        self._writer.add_image("samples", np.clip(grid, 0, 1), step, dataformats="HWC")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
