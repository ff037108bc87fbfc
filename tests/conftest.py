"""Shared fixtures: real MNIST prepared offline once per session, and a helper to run the CLIs."""

import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANUAL_DIR = os.environ.get("SGAN_MANUAL_DIR") or os.path.join(REPO, "..", "shared", "data")
# Prepared tfds datasets for the tests; kept between local runs, fresh on CI.
DATA_DIR = os.environ.get("SGAN_TEST_DATA_DIR") or os.path.join(REPO, ".cache", "tfds")

COMPILATION_CACHE = os.path.join(REPO, ".cache", "jax")
# Cache every program, not only those over jax's default 1 s of compiling: a tiny run compiles
# about 60, most of them small, and reading them back saved ~2.5 of its ~35 s here (warm cache).
CACHE_MIN_COMPILE_SECONDS = 0

# The test suite evaluates on the test split's first 2,000 images: evaluation on all 10,000
# took most of a tiny run's time.
TEST_EXAMPLES = 2000

# A run small enough for CI: 2 CPU cores, seconds per run.
TINY = (
    f"--config.test_examples={TEST_EXAMPLES}",
    "--config.num_iterations=20",
    "--config.log_every=5",
    "--config.eval_every=10",
    "--config.sample_every=10",
    "--config.checkpoint_every=5",
    "--config.supervised_epochs=1",
)


# The longest files, started first: make test's two workers take whole files in collection
# order (--dist=loadfile), so a long file left for last would run alone at the end.
LONGEST_FIRST = ("test_sharding.py", "test_distributed.py", "test_lifecycle.py", "test_sweep.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept


def pytest_configure(config):
    import jax

    jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, loaded through tfds from the original files in MANUAL_DIR."""
    if not os.path.exists(os.path.join(MANUAL_DIR, "mnist", "train-images-idx3-ubyte.gz")):
        pytest.fail(f"MNIST files not found under {MANUAL_DIR}/mnist; set SGAN_MANUAL_DIR")
    from sgan_jax.data import input_pipeline

    return input_pipeline.load_dataset("mnist", DATA_DIR, os.path.abspath(MANUAL_DIR))


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(
        SGAN_MANUAL_DIR=os.path.abspath(MANUAL_DIR),
        TFDS_DATA_DIR=DATA_DIR,
        PYTHONUNBUFFERED="1",
        # Keep each subprocess to the CPU, as in CI.
        JAX_PLATFORMS="cpu",
        # Runs with the same shapes share compiled programs across processes.
        JAX_COMPILATION_CACHE_DIR=COMPILATION_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=str(CACHE_MIN_COMPILE_SECONDS),
    )
    env.update(extra)
    return env


# A user and mount namespace of the test's own, where a small tmpfs is a real full disk; no root
# is needed where the kernel allows user namespaces.
NAMESPACE = ("unshare", "--user", "--map-root-user", "--mount")


def skip_without_tmpfs_namespace(folder) -> None:
    """Skips the test where a tmpfs cannot be mounted (on `folder`) in such a namespace."""
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]
    probe = subprocess.run([*NAMESPACE, *mount], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no tmpfs in a user and mount namespace here: {probe.stderr.strip()}")


def script_command(script: str, *args) -> list[str]:
    """The command line that runs experiments/<script> with this Python."""
    return [sys.executable, os.path.join(REPO, "experiments", script), *args]


def run_script(script: str, *args, env=None, timeout=900, check=True):
    """Runs experiments/<script> in a subprocess; returns the CompletedProcess."""
    result = subprocess.run(
        script_command(script, *args),
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result


def run_train(workdir, *overrides, config_file=None, **kwargs):
    """A TINY train.py run; `config_file` (in experiments/configs) before the overrides, which
    come after TINY and so win over it (absl keeps a flag's last value)."""
    config = [f"--config=experiments/configs/{config_file}"] if config_file else []
    return run_script("train.py", f"--workdir={workdir}", *config, *TINY, *overrides, **kwargs)


def read_rows(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_rows_close(rows_a, rows_b):
    """The same logged steps, with losses equal up to float32 summation order (other devices)."""
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for a, b in zip(rows_a, rows_b, strict=True):
        for key in ("d_loss_supervised", "d_loss_unsupervised", "g_loss"):
            assert abs(a[key] - b[key]) <= 1e-3 * abs(b[key]) + 1e-4, (key, a[key], b[key])


def read_results(workdir) -> dict:
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def _shared_run(tmp_path_factory, worker_id, name: str, config_file=None, *overrides):
    """A tiny CLI run built once per test session and read by several tests (read-only).

    make test's workers share it through their session's temporary folder: the first to ask
    builds it and the others wait (pytest-xdist's recipe for session fixtures, with a lock from
    the standard library).
    """
    basetemp = tmp_path_factory.getbasetemp()
    # This session's folder: a worker's basetemp is a subfolder of it, one process's is it.
    shared = basetemp if worker_id == "master" else basetemp.parent
    workdir = shared / name / "run"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (workdir / "results.json").exists():
            shutil.rmtree(workdir.parent, ignore_errors=True)  # a failed attempt's leftovers
            run_train(workdir, *overrides, config_file=config_file)
    return workdir


@pytest.fixture(scope="session")
def reference_run(mnist, tmp_path_factory, worker_id):
    """One tiny, uninterrupted run of the tutorial recipe that several tests compare against."""
    return _shared_run(tmp_path_factory, worker_id, "reference")


# The improved recipe's reference: 10 iterations, no baseline.
IMPROVED_REFERENCE = dict(num_iterations=10, supervised_epochs=0)


@pytest.fixture(scope="session")
def improved_reference_run(mnist, tmp_path_factory, worker_id):
    """One tiny run of the improved recipe (IMPROVED_REFERENCE), compared against likewise."""
    overrides = [f"--config.{key}={value}" for key, value in IMPROVED_REFERENCE.items()]
    return _shared_run(
        tmp_path_factory, worker_id, "improved_reference", "improved_mnist.py", *overrides
    )


def load_config(name: str):
    """experiments/configs/<name>.py's get_config()."""
    import importlib

    return importlib.import_module(f"experiments.configs.{name}").get_config()


@pytest.fixture
def tutorial_config():
    return load_config("sgan_mnist")


@pytest.fixture
def improved_config():
    return load_config("improved_mnist")


def tiny(config, **overrides):
    """A config for in-process runs on the test data: few iterations, everything exercised."""
    with config.unlocked():
        config.data_dir = DATA_DIR
        config.manual_dir = os.path.abspath(MANUAL_DIR)
        config.num_iterations = 20
        config.log_every = 5
        config.eval_every = 10
        config.sample_every = 10
        config.checkpoint_every = 10
        config.supervised_epochs = 1
        config.test_examples = TEST_EXAMPLES
        for key, value in overrides.items():
            config[key] = value
    return config
