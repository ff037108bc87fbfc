"""End to end on the real MNIST: outputs, reproducibility, exact resume, NaN guard."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from sgan_jax.runs.metrics import TIMING_FIELDS

from .conftest import read_results, read_rows, run_train


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def test_writes_every_output(reference_run):
    workdir = reference_run
    config = json.load(open(workdir / "config.json"))
    assert config["num_iterations"] == 20 and config["dataset"] == "mnist"
    rows = read_rows(workdir)
    assert [r["step"] for r in rows] == list(range(5, 21, 5))
    for row in rows:
        for key in ("d_loss_supervised", "d_loss_unsupervised", "g_loss", "train_accuracy"):
            assert np.isfinite(row[key]), (key, row)
    assert [r["step"] for r in rows if "test_accuracy" in r] == [10, 20]
    samples = sorted(os.listdir(workdir / "samples"))
    assert samples == [f"step_{s:07d}.png" for s in (10, 20)]
    grid = np.asarray(Image.open(workdir / "samples" / samples[-1]))
    assert grid.shape[0] > 100 and grid.std() > 0  # a rendered 4x4 figure, not blank
    assert {"sgan_curves.png", "supervised_loss.png", "supervised_baseline.png"} <= set(
        os.listdir(workdir / "plots")
    )
    checkpoints = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
    assert checkpoints == [10, 15, 20]  # keep_checkpoints=3
    results = read_results(workdir)
    assert results["params"] == {"generator": 1_710_771, "discriminator": 316_938}
    assert results["test_accuracy"] == rows[-1]["test_accuracy"]
    assert 0.0 <= results["supervised_test_accuracy"] <= 1.0
    for key in ("num_labeled", "seed", "num_iterations", "wall_seconds", "git_commit", "backend"):
        assert key in results
    assert results["num_labeled"] == 100 and results["seed"] == 0 and results["method"] == "sgan"
    assert results["test_examples"] == 2000  # the suite's subset (conftest.TEST_EXAMPLES)
    assert set(results["versions"]) >= {"jax", "jaxlib", "flax"}
    # The cores this process may use set XLA:CPU's rounding; the suite's runs are unpinned.
    assert results["host"]["cpu_cores_usable"] == len(os.sched_getaffinity(0))
    assert results["host"]["cpu_model"] and results["host"]["cpu_cores"] == os.cpu_count()
    # 20 iterations already beat chance (10%) by far on real MNIST.
    assert results["test_accuracy"] > 0.2


def test_another_seed_differs(reference_run, tmp_path):
    """The same seed repeats bit for bit: tests/test_lifecycle.py, whose interrupted runs train
    from step 0 and end equal to the reference run."""
    other = tmp_path / "other_seed"
    run_train(other, "--config.seed=1", "--config.num_iterations=5", "--config.supervised_epochs=0")
    assert untimed(read_rows(other))[0] != untimed(read_rows(reference_run))[0]


def test_corrupt_latest_checkpoint_falls_back(reference_run, tmp_path):
    workdir = tmp_path / "corrupt"
    shutil.copytree(reference_run, workdir)
    for name in ("results.json", "supervised.json"):
        os.remove(workdir / name)
    # Keep the files' names but destroy their contents, as a torn write would.
    for root, _, files in os.walk(workdir / "checkpoints" / "20"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\0garbage")
    resumed = run_train(workdir)
    assert "could not be restored" in resumed.stderr
    assert "Resumed from step 15" in resumed.stdout
    assert untimed(read_rows(workdir)) == untimed(read_rows(reference_run))
    assert read_results(workdir)["test_accuracy"] == read_results(reference_run)["test_accuracy"]


def test_changed_config_is_refused_and_nothing_is_lost(reference_run, tmp_path):
    workdir = tmp_path / "refused"
    shutil.copytree(reference_run, workdir)
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    result = run_train(workdir, "--config.batch_size=16", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config:") and "batch_size" in last
    after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    assert after == before


def test_nan_guard_stops_with_the_step_and_keeps_good_checkpoints(mnist, tmp_path):
    workdir = tmp_path / "nan"
    result = run_train(
        workdir,
        "--config.learning_rate=1e30",
        "--config.checkpoint_every=1",
        "--config.log_every=1",
        check=False,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: non-finite ")
    bad_step = int(last.split(" at step ")[1].split(";")[0])
    assert bad_step >= 1
    saved = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
    assert all(step < bad_step for step in saved)
    assert f"last good checkpoint: step {saved[-1]}" in last if saved else "no checkpoint" in last
    assert not (workdir / "results.json").exists()
    logged = read_rows(workdir)
    assert all(row["step"] < bad_step for row in logged)
    assert all(np.isfinite(row["d_loss_supervised"]) for row in logged)


@pytest.mark.parametrize("steps_per_dispatch", [4])
def test_chunked_dispatch_matches_single_steps(reference_run, tmp_path, steps_per_dispatch):
    """Several iterations per jitted call (the GPU loop) give the same run."""
    workdir = tmp_path / "chunked"
    run_train(
        workdir, f"--config.steps_per_dispatch={steps_per_dispatch}", "--config.supervised_epochs=0"
    )
    ours, reference = untimed(read_rows(workdir)), untimed(read_rows(reference_run))
    assert [r["step"] for r in ours] == [r["step"] for r in reference]
    for a, b in zip(ours, reference, strict=True):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
