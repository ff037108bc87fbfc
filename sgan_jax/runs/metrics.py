"""Where a run's numbers go: metrics.jsonl rows, TensorBoard event files beside them, and
atomically written summaries.

TensorBoard: every logged scalar, the test and validation accuracies at eval steps, the learning
rates and the generator's sample grids. `tensorboard --logdir=DIR` shows a run, and pointed at a
sweep's folder, every run of it, each under its folder's name. The writer is tensorboardX, not
clu.metric_writers, Flax's usual one: clu imports TensorFlow as it loads (its SummaryWriter is
tf.summary), and TensorFlow is neither in the accelerator images we run on nor welcome in a process
that holds the GPUs; tensorboardX writes the same event files in pure Python.
"""

import json
import math
import numbers
import os
import tempfile

import numpy as np
from absl import logging

# Fields that measure time; two runs of the same config match in everything else.
TIMING_FIELDS = ("it_per_s", "elapsed_seconds", "process_elapsed_seconds")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # os.umask can only be read by setting it, so once, at import


def atomic_write_text(path: str, text: str) -> None:
    """Writes via a temporary file in the same folder and a rename: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        # mkstemp makes the file private (0600); give it the mode open() would, so results
        # on shared storage stay readable by the group as the user's umask intends.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def read_rows(path: str) -> list[dict]:
    """metrics.jsonl rows, the last one per step winning; a torn last line is dropped."""
    if not os.path.exists(path):
        return []
    by_step = {}
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a write cut off by a kill
            by_step[row["step"]] = row
    return [by_step[step] for step in sorted(by_step)]


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl.

    On resume from step N, rows after N are dropped first, so the finished file is the same as
    that of a run that was never interrupted.
    """

    def __init__(self, path: str, resume_step: int = 0, write: bool = True):
        self.path = path
        self.enabled = write  # False in the processes of a multi-host run that write no files
        self.rows = [row for row in read_rows(path) if row["step"] <= resume_step]
        if self.enabled:
            atomic_write_text(path, "".join(json.dumps(_json_safe(r)) + "\n" for r in self.rows))

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(_json_safe(row)) + "\n")
            f.flush()


class EventWriter:
    """Writes one run's events; a no-op where `enabled` is False (the processes that write no
    files, or tensorboard=False)."""

    def __init__(self, workdir: str, schedules: dict, start_step: int, enabled: bool):
        """`schedules` maps names to the learning rates in force: a number or a function of
        the step."""
        self._writer = None
        self._schedules = schedules
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
        if "it_per_s" in row:  # a log step
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
