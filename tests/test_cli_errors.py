"""Bad input: a one-line error naming the key, a non-zero exit, no traceback, nothing lost."""

import os
import shutil

import pytest

from sgan_jax.runs import errors

from .conftest import MANUAL_DIR, cli_env, run_script

CASES = [
    ("num_labeled_zero", ["--config.num_labeled=0"], "num_labeled"),
    ("num_labeled_above_train_size", ["--config.num_labeled=60001"], "num_labeled"),
    (
        "balanced_not_divisible",
        ["--config.label_selection=balanced", "--config.num_labeled=105"],
        "num_labeled",
    ),
    ("unknown_label_selection", ["--config.label_selection=random"], "label_selection"),
    ("unknown_dataset", ["--config.dataset=no_such_dataset"], "dataset"),
    ("unsupported_image_shape", ["--config.dataset=stl10"], "dataset"),
    ("batch_size_zero", ["--config.batch_size=0"], "batch_size"),
    ("num_iterations_negative", ["--config.num_iterations=-1"], "num_iterations"),
    ("lr_decay_start_above_one", ["--config.lr_decay_start=1.5"], "lr_decay_start"),
    ("unknown_config_key", ["--config.no_such_key=1"], "config.no_such_key: unknown config key"),
    (
        "unknown_key_of_a_config_file",  # parsed later than the default file's overrides
        ["--config=experiments/configs/improved_mnist.py", "--config.no_such_key=1"],
        "config.no_such_key: unknown config key",
    ),
    ("mistyped_value", ["--config.batch_size=many"], "batch_size"),
    ("test_examples_above_test_size", ["--config.test_examples=10001"], "test_examples"),
]


def assert_clean_error(result, key):
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert key in errors[0], errors[0]
    assert result.stderr.strip().splitlines()[-1] == errors[0]


@pytest.mark.parametrize("name,args,key", CASES, ids=[c[0] for c in CASES])
def test_bad_config_value(mnist, tmp_path, name, args, key):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    result = run_script("train.py", f"--workdir={workdir}", *args, check=False)
    assert_clean_error(result, key)
    assert result.returncode == 2
    # Nothing written, nothing lost.
    assert sorted(os.listdir(workdir)) == ["notes.txt"]
    assert (workdir / "notes.txt").read_text() == "keep me"


def test_workdir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_script("train.py", f"--workdir={blocker}/run", check=False)
    assert_clean_error(result, "workdir")


def test_missing_workdir_flag():
    result = run_script("train.py", check=False)
    assert_clean_error(result, "workdir")


def test_missing_offline_file(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(os.path.join(MANUAL_DIR, "mnist"), manual / "mnist")
    os.remove(manual / "mnist" / "t10k-labels-idx1-ubyte.gz")
    env = cli_env(SGAN_MANUAL_DIR=str(manual), TFDS_DATA_DIR=str(tmp_path / "fresh_tfds"))
    result = run_script("train.py", f"--workdir={tmp_path / 'run'}", env=env, check=False)
    assert_clean_error(result, "manual_dir")
    assert "t10k-labels-idx1-ubyte.gz" in result.stderr
    assert not (tmp_path / "run").exists()


def test_sweep_bad_budget_list(tmp_path):
    result = run_script("sweep.py", f"--workdir={tmp_path}", "--num_labeled=20,lots", check=False)
    assert_clean_error(result, "num_labeled")


def test_config_file_that_does_not_exist(tmp_path):
    result = run_script(
        "train.py", f"--workdir={tmp_path}/run", "--config=no/such/config.py", check=False
    )
    assert_clean_error(result, "config")
    assert "no/such/config.py" in result.stderr


def test_a_full_disk_or_quota_is_told_from_other_errors():
    """What errors.no_space reads: Python's OSError (here a real one, from /dev/full), the
    text orbax raised for a checkpoint that filled a tmpfs (2026-12-02, shortened), through
    the errors raised from them; a bad-input error raised `from None` over one is not it."""
    with pytest.raises(OSError) as full:
        with open("/dev/full", "w") as f:
            f.write("x")
    assert errors.no_space(full.value) == ("no space left on device", "")
    orbax_text = (
        'RESOURCE_EXHAUSTED: Error writing "generator.params.Dense_0.bias/0" in OCDBT database '
        'at local file "/run/checkpoints/15.orbax-checkpoint-tmp/": Failed to write 14725120 '
        "bytes to file 21: No space left on device [os_error_code='{}']"
    )
    try:
        try:
            raise ValueError(orbax_text.format(122))
        except ValueError as error:
            raise RuntimeError("the save failed") from error
    except RuntimeError as error:
        assert errors.no_space(error) == ("disk quota exceeded", "")
    assert errors.no_space(ValueError(orbax_text.format(28)))[0] == "no space left on device"
    assert errors.no_space(ValueError(orbax_text.format(13))) is None
    try:
        try:
            raise full.value
        except OSError:
            raise errors.ConfigError("workdir", "cannot create it") from None
    except errors.ConfigError as error:
        assert errors.no_space(error) is None
