"""A run's lifecycle on real MNIST: one writer, stop signals, resume that loses nothing."""

import os
import re
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from sgan_jax.runs.metrics import TIMING_FIELDS

from .conftest import (
    NAMESPACE,
    TINY,
    cli_env,
    read_results,
    read_rows,
    run_train,
    script_command,
    skip_without_tmpfs_namespace,
)

# Every step that is evaluated is also checkpointed, and every checkpoint is kept.
VALIDATION = (
    "--config.num_validation=200",
    "--config.eval_every=5",
    "--config.keep_checkpoints=4",
    "--config.supervised_epochs=0",
)


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def snapshot(workdir) -> dict:
    return {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}


def train_command(workdir, *overrides) -> list[str]:
    return script_command("train.py", f"--workdir={workdir}", *TINY, *overrides)


def wait_for(condition, process, timeout=600, what="condition"):
    start = time.time()
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"run ended before {what}: {process.stderr.read()}")
        if time.time() - start > timeout:
            raise AssertionError(f"no {what} after {timeout}s")
        time.sleep(0.02)


def steps_in(folder) -> list[int]:
    return sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if folder.exists() else []


@pytest.fixture(scope="module")
def validation_run(mnist, tmp_path_factory):
    """An uninterrupted tiny run with a validation split, evaluated every 5 steps."""
    workdir = tmp_path_factory.mktemp("validation") / "run"
    run_train(workdir, *VALIDATION)
    return workdir


def test_resume_replaying_a_saved_best_step(validation_run, tmp_path):
    """Killed after a new best but before the next regular checkpoint: the resume replays the
    best step. It used to end in orbax's StepAlreadyExistsError; now the resume prunes it."""
    workdir = tmp_path / "killed"
    shutil.copytree(validation_run, workdir)
    (best,) = steps_in(workdir / "best_checkpoint")
    kept = max(step for step in steps_in(workdir / "checkpoints") if step < best)
    for step in steps_in(workdir / "checkpoints"):
        if step > kept:  # as if killed before these were written
            shutil.rmtree(workdir / "checkpoints" / str(step))
    os.remove(workdir / "results.json")
    resumed = run_train(workdir, *VALIDATION)
    assert f"Resumed from step {kept}" in resumed.stdout
    assert untimed(read_rows(workdir)) == untimed(read_rows(validation_run))
    ours, reference = read_results(workdir), read_results(validation_run)
    for key in ("test_accuracy", "best_validation_step", "selected_test_accuracy"):
        assert ours[key] == reference[key], key
    assert steps_in(workdir / "best_checkpoint") == [best]


def test_checkpoints_that_do_not_restore_stop_the_run_and_touch_nothing(reference_run, tmp_path):
    """No checkpoint restores (storage failing, or a state from other code): one line naming
    the folder and the cause, exit 4, every file as it was. It used to start over from 0."""
    workdir = tmp_path / "unreadable"
    shutil.copytree(reference_run, workdir)
    os.remove(workdir / "results.json")
    for root, _, files in os.walk(workdir / "checkpoints"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\0garbage")
    before = snapshot(workdir)
    result = run_train(workdir, check=False)
    assert result.returncode == 4, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: checkpoints: {workdir / 'checkpoints'}: no checkpoint")
    assert "step 20" in last
    assert snapshot(workdir) == before


def test_lengthening_a_decayed_run_is_refused(mnist, tmp_path):
    workdir = tmp_path / "decayed"
    decay = ("--config.lr_decay_start=0.5", "--config.supervised_epochs=0")
    run_train(workdir, "--config.num_iterations=5", *decay)
    before = snapshot(workdir)
    result = run_train(workdir, "--config.num_iterations=10", *decay, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: num_iterations:") and "lr_decay_start=0.5" in last
    assert snapshot(workdir) == before


def test_runtime_keys_may_change_on_resume_and_are_recorded(reference_run, tmp_path):
    """A finished constant-rate run, lengthened on another machine's settings."""
    workdir = tmp_path / "moved"
    shutil.copytree(reference_run, workdir)
    changed = (
        "--config.num_iterations=30",
        "--config.steps_per_dispatch=5",
        "--config.eval_batch_size=500",
        "--config.keep_checkpoints=2",
        "--config.num_devices=1",
    )
    run_train(workdir, *changed)
    results = read_results(workdir)
    assert results["final_step"] == 30
    rows = read_rows(workdir)
    assert [r["step"] for r in rows][-3:] == [20, 25, 30]
    assert untimed(rows[:4]) == untimed(read_rows(reference_run))
    (record,) = results["runtime_key_changes"]
    assert record["step"] == 20
    assert record["changes"] == {
        "steps_per_dispatch": [0, 5],
        "eval_batch_size": [1000, 500],
        "keep_checkpoints": [3, 2],
        "num_devices": [0, 1],
    }
    assert steps_in(workdir / "checkpoints") == [25, 30]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_the_step_and_the_same_command_resumes_exactly(
    reference_run, tmp_path, stop_signal
):
    workdir = tmp_path / "stopped"
    process = subprocess.Popen(
        train_command(workdir), env=cli_env(), stderr=subprocess.PIPE, text=True
    )
    rows_file = workdir / "metrics.jsonl"
    wait_for(lambda: rows_file.exists() and rows_file.stat().st_size > 0, process, what="a row")
    sent = time.time()
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=60)
    assert time.time() - sent < 60
    assert process.returncode == 75, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {stop_signal.name}; checkpoint saved at step ")
    step = int(last.split("at step ")[1].split(";")[0])
    assert 5 <= step < 20 and steps_in(workdir / "checkpoints")[-1] == step
    assert not (workdir / "results.json").exists()
    if stop_signal == signal.SIGINT:
        return  # the resume is the same as after SIGTERM
    stopped_seconds = read_rows(workdir)[-1]["elapsed_seconds"]
    resumed = run_train(workdir)
    assert f"Resumed from step {step}" in resumed.stdout
    assert untimed(read_rows(workdir)) == untimed(read_rows(reference_run))
    results, reference = read_results(workdir), read_results(reference_run)
    for key in ("test_accuracy", "supervised_test_accuracy"):
        assert results[key] == reference[key], key
    # Time adds up over the two processes; this process's own time is kept beside it.
    assert results["wall_seconds"] > results["process_wall_seconds"] + stopped_seconds * 0.99
    elapsed = [r["elapsed_seconds"] for r in read_rows(workdir)]
    assert elapsed == sorted(elapsed)


def test_second_process_is_refused_and_a_killed_one_leaves_no_lock(reference_run, tmp_path):
    """Also the SIGKILL resume: the run killed between checkpoints resumes exactly."""
    workdir = tmp_path / "twice"
    first = subprocess.Popen(
        train_command(workdir), env=cli_env(), stderr=subprocess.PIPE, text=True
    )
    checkpoint = workdir / "checkpoints" / "10"
    wait_for(lambda: checkpoint.is_dir() and any(checkpoint.iterdir()), first, what="step 10")
    first.send_signal(signal.SIGSTOP)  # holds its lock however fast the machine
    second = run_train(workdir, check=False)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: workdir: {workdir} is in use by pid {first.pid}")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert not (workdir / "results.json").exists()
    resumed = run_train(workdir)  # the kernel dropped the lock with the process
    assert "Resumed from step" in resumed.stdout
    assert untimed(read_rows(workdir)) == untimed(read_rows(reference_run))
    results, reference = read_results(workdir), read_results(reference_run)
    for key in ("test_accuracy", "supervised_test_accuracy"):
        assert results[key] == reference[key], key


def test_a_write_that_finds_the_disk_full_ends_the_run_in_one_line(tmp_path):
    """A real ENOSPC from the kernel, through /dev/full, where the grid of step 10 is written
    first (plots' temporary file): the run stops with exit 5 and one line that names the step
    a rerun resumes from. It used to end in a traceback (exit 1). That the resume is exact is
    the next test's."""
    workdir = tmp_path / "full"
    grid = workdir / "samples" / "step_0000010.png.tmp.png"
    grid.parent.mkdir(parents=True)
    grid.symlink_to("/dev/full")
    first = run_train(workdir, check=False)
    assert first.returncode == 5 and "Traceback" not in first.stderr, first.stderr[-3000:]
    assert first.stderr.strip().splitlines()[-1] == (
        f"error: no space left on device: {workdir}; free some, then run the same command: "
        "it resumes from step 5"
    )
    assert steps_in(workdir / "checkpoints") == [5]  # the grid comes before step 10's checkpoint
    assert not grid.is_symlink()  # the half-written grid is removed
    assert not (workdir / "results.json").exists()


# Runs in a mount namespace of its own (no root needed where user namespaces are allowed): the
# workdir is a tmpfs of SIZE KiB; a run, the tmpfs grown, the same command again.
FULL_TMPFS = textwrap.dedent(
    """\
    set -u
    mount -t tmpfs -o size="$SIZE"k tmpfs "$RUN" || exit 1
    "$@" --workdir="$RUN" > "$OUT/first.out" 2> "$OUT/first.err"; echo $? > "$OUT/first.rc"
    ls -a "$RUN/checkpoints" > "$OUT/first.ls"
    mount -o remount,size=1g "$RUN" || exit 1
    "$@" --workdir="$RUN" > "$OUT/second.out" 2> "$OUT/second.err"; echo $? > "$OUT/second.rc"
    cp -r "$RUN" "$OUT/run"
    """
)


def test_a_checkpoint_the_disk_cannot_hold_is_refused_before_it_is_written(reference_run, tmp_path):
    """A tmpfs that holds two checkpoints and a half: the third is refused before orbax writes
    a byte of it (a write cut off midway printed a thousand lines of orbax's tracebacks), and
    once the space is there the same command resumes exactly."""
    skip_without_tmpfs_namespace(tmp_path)
    checkpoint = reference_run / "checkpoints" / "20"
    checkpoint_bytes = sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())
    run, out = tmp_path / "tmpfs", tmp_path / "out"
    run.mkdir()
    out.mkdir()
    env = cli_env(SIZE=str(int(checkpoint_bytes * 2.5) // 1024), RUN=str(run), OUT=str(out))
    command = train_command(run)[:2] + list(TINY)  # the workdir flag comes from the script
    subprocess.run([*NAMESPACE, "sh", "-c", FULL_TMPFS, "sh", *command], env=env, check=True)

    first_err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "5", first_err[-3000:]
    assert "Traceback" not in first_err, first_err[-3000:]
    assert re.fullmatch(
        rf"error: no space left on device: {run}/checkpoints \(\d+\.\d MiB free, a checkpoint "
        r"needs \d+\.\d MiB\); free some, then run the same command: it resumes from step 10",
        first_err.strip().splitlines()[-1],
    )
    assert (out / "first.ls").read_text().split() == [".", "..", "10", "5"]  # nothing half-written
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()[-3000:]
    assert "Resumed from step 10" in (out / "second.out").read_text()
    assert untimed(read_rows(out / "run")) == untimed(read_rows(reference_run))
    results, reference = read_results(out / "run"), read_results(reference_run)
    for key in ("test_accuracy", "supervised_test_accuracy"):
        assert results[key] == reference[key], key


@pytest.fixture(scope="module")
def every_step(mnist, tmp_path_factory):
    """The per-step metrics of a tiny tutorial run (log_every=1), and a run of the same training
    logged every 5 steps and checkpointed every 2 (log_every changes no number it trains)."""
    from sgan_jax.training import train

    from .conftest import load_config, tiny

    def config(**overrides):
        return tiny(
            load_config("sgan_mnist"),
            supervised_epochs=0,
            keep_checkpoints=20,
            batch_size=8,  # the windows are under test, not learning
            **overrides,
        )

    base = tmp_path_factory.mktemp("log_every")
    train.train_and_evaluate(config(log_every=1), str(base / "per_step"))
    train.train_and_evaluate(config(log_every=5, checkpoint_every=2), str(base / "every5"))
    return config, {r["step"]: r for r in read_rows(base / "per_step")}, base / "every5"


@pytest.mark.parametrize("resume_step", [10, 12])
def test_log_every_changed_on_resume_logs_every_step_exactly_once(
    every_step, tmp_path, resume_step
):
    """Resumed with log_every=3 at step 10 (logged under 5) or 12 (not logged, and a multiple
    of 3): each row after it is the mean of exactly the steps since the row before, as the
    per-step run logged them; none counted twice (10), none dropped (12, logged at once)."""
    from sgan_jax.training import train

    config, per_step, every5 = every_step
    workdir = tmp_path / "resumed"
    shutil.copytree(every5, workdir)
    for step in steps_in(workdir / "checkpoints"):
        if step > resume_step:
            shutil.rmtree(workdir / "checkpoints" / str(step))
    (workdir / "results.json").unlink()
    train.train_and_evaluate(config(log_every=3, checkpoint_every=2), str(workdir))
    logged = [r for r in read_rows(workdir) if "g_loss" in r]
    assert [r["step"] for r in logged] == [5, 10, 12, 15, 18, 20]
    for previous, row in zip(logged, logged[1:], strict=False):
        window = range(previous["step"] + 1, row["step"] + 1)
        for key in ("d_loss_supervised", "d_loss_unsupervised", "g_loss", "train_accuracy"):
            mean = sum(per_step[s][key] for s in window) / len(window)
            assert row[key] == pytest.approx(mean, rel=1e-5, abs=1e-6), (row["step"], key)
