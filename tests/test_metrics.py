"""Summary files: atomic writes with ordinary permissions; metrics rows, last per step."""

import os
import stat

from sgan_jax.runs import metrics


def test_atomic_write_has_the_umask_mode_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "results.json"
    metrics.atomic_write_json(str(path), {"test_accuracy": 0.5, "nan": float("nan")})
    assert metrics.read_json(str(path)) == {"test_accuracy": 0.5, "nan": "nan"}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["results.json"]


def test_read_rows_keeps_the_last_row_per_step_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "g": 1.0}\n{"step": 2, "g": 2.0}\n{"step": 1, "g": 3.0}\n{"ste')
    assert metrics.read_rows(str(path)) == [{"step": 1, "g": 3.0}, {"step": 2, "g": 2.0}]
