"""The run's files on disk: metrics.jsonl rows and atomically written summaries."""

import json
import math
import os
import tempfile

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
